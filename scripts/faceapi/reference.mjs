// The agreement test's reference: face-api itself (TinyFaceDetector on tfjs's pure-JS CPU
// backend) on real photos. Run by scripts/models.sh after setup installed this directory's
// package.json into the cache:
//
//   node reference.mjs ASTRONAUT_PNG OUT_DIR
//
// Writes into OUT_DIR the test photos (astronaut.png, plus crops and collages made from it,
// deterministic) and reference.json: per photo and input size (416, 320), face-api's boxes
// (x, y, w, h in the photo's pixels) and scores.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { PNG } = require('pngjs');
// face-api's node-wasm build is the one that uses the pure-JS @tensorflow/tfjs (no native
// tfjs-node); it registers the wasm backend too, but the CPU backend is selected below.
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error('usage: node reference.mjs ASTRONAUT_PNG OUT_DIR');
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });

await tf.setBackend('cpu');
await tf.ready();
const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'tiny_face_detector_model-weights_manifest.json'), 'utf8'));
const bin = fs.readFileSync(path.join(modelDir, 'tiny_face_detector_model.bin'));
const weights = tf.io.decodeWeights(new Uint8Array(bin).buffer, manifest[0].weights);
faceapi.nets.tinyFaceDetector.loadFromWeightMap(weights);

// RGB image helpers (packed, 3 bytes per pixel).
function readPng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    rgb[i * 3] = png.data[i * 4];
    rgb[i * 3 + 1] = png.data[i * 4 + 1];
    rgb[i * 3 + 2] = png.data[i * 4 + 2];
  }
  return { w: png.width, h: png.height, rgb };
}
function writePng(img, file) {
  const png = new PNG({ width: img.w, height: img.h, colorType: 2 });
  for (let i = 0; i < img.w * img.h; i++) {
    png.data[i * 4] = img.rgb[i * 3];
    png.data[i * 4 + 1] = img.rgb[i * 3 + 1];
    png.data[i * 4 + 2] = img.rgb[i * 3 + 2];
    png.data[i * 4 + 3] = 255;
  }
  fs.writeFileSync(file, PNG.sync.write(png, { colorType: 2 }));
}
function crop(img, x, y, w, h) {
  const rgb = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) rgb.set(img.rgb.subarray(((y + r) * img.w + x) * 3, ((y + r) * img.w + x + w) * 3), r * w * 3);
  return { w, h, rgb };
}
// Nearest-neighbour shrink by an integer factor: a smaller face, no new library.
function shrink(img, f) {
  const w = Math.floor(img.w / f), h = Math.floor(img.h / f);
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) rgb[(y * w + x) * 3 + c] = img.rgb[(y * f * img.w + x * f) * 3 + c];
  return { w, h, rgb };
}
// Tiles on a mid-grey canvas at the given offsets.
function collage(w, h, tiles) {
  const rgb = new Uint8Array(w * h * 3).fill(128);
  for (const { img, x, y } of tiles) for (let r = 0; r < img.h; r++) rgb.set(img.rgb.subarray(r * img.w * 3, (r + 1) * img.w * 3), ((y + r) * w + x) * 3);
  return { w, h, rgb };
}

const astro = readPng(src);
const face = crop(astro, 100, 0, 240, 260); // the head and shoulders
const images = {
  'astronaut.png': astro,
  'astronaut-crop-wide.png': crop(astro, 0, 0, 512, 300), // landscape: pads the bottom
  'astronaut-crop-tall.png': crop(astro, 120, 0, 220, 512), // portrait: pads the right
  'astronaut-collage.png': collage(900, 420, [
    { img: face, x: 20, y: 40 },
    { img: shrink(face, 2), x: 330, y: 200 },
    { img: crop(astro, 0, 0, 512, 400), x: 380, y: 10 },
  ]),
};

const reference = { generator: 'face-api ' + faceapi.version + ', tfjs ' + tf.version.tfjs + ' (cpu backend)', score_threshold: 0.5, iou_threshold: 0.4, images: {} };
for (const [name, img] of Object.entries(images)) {
  writePng(img, path.join(out, name));
  const t = tf.tensor3d(img.rgb, [img.h, img.w, 3], 'int32');
  reference.images[name] = { width: img.w, height: img.h };
  for (const size of [416, 320]) {
    const dets = await faceapi.nets.tinyFaceDetector.locateFaces(t, new faceapi.TinyFaceDetectorOptions({ inputSize: size, scoreThreshold: 0.5 }));
    reference.images[name][size] = dets.map((d) => ({ x: d.box.x, y: d.box.y, w: d.box.width, h: d.box.height, score: d.score }));
    console.log(`${name} @${size}: ${dets.length} face(s)`, dets.map((d) => d.score.toFixed(3)).join(' '));
  }
  t.dispose();
}
fs.writeFileSync(path.join(out, 'reference.json'), JSON.stringify(reference, null, 1) + '\n');
