#!/usr/bin/env bash
# Draws one PNG with the three panels of Locust's charts from framegate-bench CSV files:
# requests/s and failures/s, latency percentiles, users and backends over time.
# Usage: plot.sh CSV OUT.png [TITLE]                                  one run
#        plot.sh OUT.png TITLE CSV[:LABEL] [CSV[:LABEL] ...]          runs side by side
# (gnuplot from Debian: gnuplot-nox)
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,6p' "$0" >&2
    exit 2
fi
if [[ $1 == *.csv && $2 == *.png ]]; then
    # The one-run form: the title defaults to the CSV's name.
    csv=$1 out=$2 title=${3:-$(basename "$1" .csv)}
    set -- "$csv"
else
    [ $# -ge 3 ] || { echo "plot.sh: no CSV given" >&2; exit 2; }
    out=$1 title=$2
    shift 2
fi
for spec in "$@"; do
    [ -r "${spec%%:*}" ] || { echo "plot.sh: cannot read ${spec%%:*}" >&2; exit 2; }
done
rps="" fail="" lat="" users=""
for spec in "$@"; do
    csv=${spec%%:*}
    label=${spec#*:}
    [ "$label" = "$spec" ] && label=$(basename "$csv" .csv)
    rps+="'$csv' using 1:3 with lines lw 2 title '$label ok/s', "
    fail+="'$csv' using 1:4 with lines lw 2 dt 2 title '$label failed/s', "
    lat+="'$csv' using 1:(\$9/1000) with lines title '$label p50', '$csv' using 1:(\$10/1000) with lines dt 3 title '$label p95', '$csv' using 1:(\$11/1000) with lines dt 2 title '$label p99', "
    users+="'$csv' using 1:2 with lines title '$label users' axes x1y2, "
    # Backend counts are empty when the bench did not poll /v1/backends (other balancers).
    if awk -F, 'NR > 1 && $13 != "" {found = 1} END {exit !found}' "$csv"; then
        users+="'$csv' using 1:(\$12+\$13) with steps lw 2 title '$label backends (starting+ready)', "
    fi
done
# gnuplot's offsets do not apply to y2: give the users axis its headroom by hand.
umax=$(awk -F, 'FNR > 1 && $2 + 0 > m {m = $2 + 0} END {print (m > 0 ? m * 1.08 : 1)}' "${@%%:*}")
gnuplot <<GP
set terminal pngcairo size 1100,1100 font ",10"
set output "$out"
set datafile separator ","
set key outside right top
set grid
set multiplot layout 3,1 title "$title"
set title "Requests per second"
set ylabel "req/s"
plot ${rps}${fail%, }
set title "Response time"
set ylabel "seconds"
plot ${lat%, }
set title "Users and backends"
set xlabel "seconds"
set ylabel "backends"
set y2label "users"
set y2tics
# Counts start at zero, and a little headroom keeps a flat line off the top border.
set yrange [0:*]
set y2range [0:${umax}]
set offsets 0, 0, graph 0.08, 0
plot ${users%, }
unset multiplot
GP
echo "$out"
