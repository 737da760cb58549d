// ONNX Runtime's side of framegate-bench-inference: one session (CPU, intra-op threads as
// given, graph optimisations on), driven by the bench over stdin/stdout one line at a time, so
// its runs interleave with framegate's frame by frame. Usage:
//   node ort_worker.mjs MODEL.onnx THREADS
// Commands (one reply line each):
//   load PATH        a frame: 1x3xHxW floats, native endian  -> "ok K" (its index)
//   run K            one session.run on frame K              -> "MS" (the run alone, ms)
//   dump K PATH      writes every output of frame K, in the model's order -> "ok NFLOATS"
// Errors reply "error ..." and the worker keeps going; EOF ends it.
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';

const [model, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg || 1);
const session = await ort.InferenceSession.create(model, {
  executionProviders: ['cpu'],
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  // The intra-op threads spin while a run is on (ONNX Runtime's default allow_spinning), and
  // force_spinning_stop (ONNX Runtime's option for a server between requests) stops them when
  // the run returns. Without it a pool thread of the 2-thread session woke again and spun
  // ~25 ms during the next framegate turn, after ort_peer_settle had seen the pool idle:
  // framegate's 2-thread pass then ran at its 1-thread speed whenever it followed ONNX
  // Runtime (e2e 34 vs 20 ms on yolov3-tiny), while ONNX Runtime's own time was the same
  // either way (16.2 vs 16.0 ms). FG_ORT_SPIN=0: no spinning at all; FG_ORT_STOPSPIN=0: the
  // old behaviour.
  extra: {
    session: {
      force_spinning_stop: process.env.FG_ORT_STOPSPIN ?? '1',
      ...(process.env.FG_ORT_SPIN !== undefined
        ? { intra_op: { allow_spinning: process.env.FG_ORT_SPIN } }
        : {}),
    },
  },
});
const inputName = session.inputNames[0];
const frames = [];
const out = (s) => process.stdout.write(s + '\n');

async function handle(line) {
  const [cmd, a, b] = line.trim().split(/\s+/);
  if (cmd === 'load') {
    const buf = readFileSync(a);
    const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const dims = session.inputMetadata?.[0]?.shape;
    const shape = Array.isArray(dims) && dims.every((d) => typeof d === 'number') ? dims : null;
    if (shape === null || shape.reduce((x, y) => x * y, 1) !== data.length)
      return out(`error ${a}: ${data.length} floats do not fit the input ${JSON.stringify(dims)}`);
    frames.push({ [inputName]: new ort.Tensor('float32', data, shape) });
    return out(`ok ${frames.length - 1}`);
  }
  const feeds = frames[Number(a)];
  if (feeds === undefined) return out(`error no frame ${a}`);
  if (cmd === 'run') {
    const t0 = performance.now();
    await session.run(feeds);
    return out(String(performance.now() - t0));
  }
  if (cmd === 'dump') {
    const r = await session.run(feeds);
    const parts = session.outputNames.map((n) => r[n].data);
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let k = 0;
    for (const p of parts) {
      all.set(p, k);
      k += p.length;
    }
    writeFileSync(b, Buffer.from(all.buffer));
    return out(`ok ${all.length}`);
  }
  return out(`error unknown command ${cmd}`);
}

out(`ready ${ort.env.versions?.common ?? ''} ${session.outputNames.join(',')}`);
// One command at a time, in order: the bench waits for each reply before it sends the next.
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  try {
    await handle(line);
  } catch (e) {
    out(`error ${String(e.message || e).replace(/\n/g, ' ')}`);
  }
}
