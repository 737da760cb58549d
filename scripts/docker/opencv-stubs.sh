#!/usr/bin/env bash
# Writes into OUT_DIR stand-ins for the OpenCV libraries Debian's libdarknet.so links, so the
# runtime image can load libdarknet without OpenCV (OpenCV's dependency closure — Qt,
# GStreamer, FFmpeg, GDAL... — is ~340 MB; the whole image must stay under 250 MB).
# libdarknet calls OpenCV only in its image I/O and display helpers (imread, imshow,
# VideoCapture); framegate decodes frames itself (libjpeg-turbo, libspng) and never reaches
# them. The one darknet loader the backend calls, load_image_color(), reads the label glyphs
# for ?format=jpeg, and only when /usr/share/darknet/data/labels exists: the image does not
# ship it, so boxes are drawn without their text there. Each stand-in symbol, if it were ever
# called, prints what happened and aborts: never a silent wrong answer.
# The symbol list is read from libdarknet.so itself, so a new darknet package cannot drift.
# Usage: opencv-stubs.sh OUT_DIR [LIBDARKNET] (needs cc, nm, readelf)
set -euo pipefail
out=$1
lib=${2:-/usr/lib/darknet/libdarknet.so}
mkdir -p "$out"
src=$(mktemp --suffix=.c)
trap 'rm -f "$src"' EXIT

{
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo 'static void fg_no_opencv(const char *sym)'
    echo '{'
    echo '    fprintf(stderr, "framegate image: darknet called OpenCV (%s), which this image "'
    echo '                    "does not ship (scripts/docker/opencv-stubs.sh)\n", sym);'
    echo '    abort();'
    echo '}'
    n=0
    # Undefined cv:: symbols (functions only: darknet uses no OpenCV data symbol).
    for sym in $(nm -D --undefined-only "$lib" | awk '{print $2}' | grep -E '^_ZN?K?2cv'); do
        n=$((n + 1))
        echo "void fg_stub_$n(void) __asm__(\"$sym\");"
        echo "void fg_stub_$n(void) { fg_no_opencv(\"$sym\"); }"
    done
} >"$src"

# One library defines every symbol; the loader resolves across all loaded libraries, so the
# other sonames darknet names only have to exist.
first=
for soname in $(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(libopencv_[^]]*\)\]/\1/p'); do
    if [ -z "$first" ]; then
        cc -shared -fPIC -O2 -Wall -Wextra -Werror -Wl,-soname,"$soname" -o "$out/$soname" "$src"
        first=$soname
    else
        echo 'void fg_stub_empty(void);' | cc -shared -fPIC -x c -Wl,-soname,"$soname" -o "$out/$soname" -
    fi
    echo "opencv-stubs.sh: $out/$soname"
done
[ -n "$first" ] || echo "opencv-stubs.sh: $lib links no OpenCV: nothing to stand in for"
