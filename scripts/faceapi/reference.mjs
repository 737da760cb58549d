// The agreement test's reference: face-api itself (TinyFaceDetector on tfjs's pure-JS CPU
// backend) on real photos. Run by scripts/models.sh after setup installed this directory's
// package.json into the cache:
//
//   node reference.mjs ASTRONAUT_PNG DARKNET_DATA_DIR OUT_DIR
//
// Writes into OUT_DIR the test photos and reference.json: per photo and input size (416, 320),
// face-api's boxes (x, y, w, h in the photo's pixels) and scores. The photos (deterministic):
// - PNGs: astronaut.png, crops and a collage of it;
// - JPEG frames like a camera's: 1280x720 and 1920x1080 scenes (darknet's kite.jpg with
//   the astronaut's face pasted in, small in the frame), grayscale, faces cut by the image's edges, dark frames, and some
//   of darknet's own photos as they are (real 4:2:0 camera JPEGs). face-api in node reads a
//   JPEG with jpeg-js, so each JPEG is written, read back from its bytes with jpeg-js and only
//   then handed to face-api: the reference is face-api's own node path from the file.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { PNG } = require('pngjs');
const jpeg = require('jpeg-js');
// face-api's node-wasm build is the one that uses the pure-JS @tensorflow/tfjs (no native
// tfjs-node); it registers the wasm backend too, but the CPU backend is selected below.
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const [src, darknetData, out] = process.argv.slice(2);
if (!src || !darknetData || !out) {
  console.error('usage: node reference.mjs ASTRONAUT_PNG DARKNET_DATA_DIR OUT_DIR');
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
function rgbFromRgba(w, h, rgba) {
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    rgb[i * 3] = rgba[i * 4];
    rgb[i * 3 + 1] = rgba[i * 4 + 1];
    rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return rgb;
}
// face-api's node path for a JPEG file: jpeg-js decodes the bytes (RGBA), the RGB goes to tf.
function decodeJpeg(bytes) {
  const d = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  return { w: d.width, h: d.height, rgb: rgbFromRgba(d.width, d.height, d.data) };
}
function encodeJpeg(img, quality) {
  const rgba = new Uint8Array(img.w * img.h * 4);
  for (let i = 0; i < img.w * img.h; i++) {
    rgba[i * 4] = img.rgb[i * 3];
    rgba[i * 4 + 1] = img.rgb[i * 3 + 1];
    rgba[i * 4 + 2] = img.rgb[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  return jpeg.encode({ data: rgba, width: img.w, height: img.h }, quality).data;
}
// Nearest-neighbour resize to w x h (any factor): a background of camera size.
function resizeNearest(img, w, h) {
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = Math.floor((y * img.h) / h);
    for (let x = 0; x < w; x++) {
      const sx = Math.floor((x * img.w) / w);
      for (let c = 0; c < 3; c++) rgb[(y * w + x) * 3 + c] = img.rgb[(sy * img.w + sx) * 3 + c];
    }
  }
  return { w, h, rgb };
}
function gray(img) {
  const rgb = new Uint8Array(img.w * img.h * 3);
  for (let i = 0; i < img.w * img.h; i++) {
    const v = Math.round(0.299 * img.rgb[i * 3] + 0.587 * img.rgb[i * 3 + 1] + 0.114 * img.rgb[i * 3 + 2]);
    rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = v;
  }
  return { w: img.w, h: img.h, rgb };
}
function darken(img, f) {
  return { w: img.w, h: img.h, rgb: img.rgb.map((v) => Math.round(v * f)) };
}
function paste(dst, tiles) {
  const rgb = Uint8Array.from(dst.rgb);
  for (const { img, x, y } of tiles) for (let r = 0; r < img.h; r++) rgb.set(img.rgb.subarray(r * img.w * 3, (r + 1) * img.w * 3), ((y + r) * dst.w + x) * 3);
  return { w: dst.w, h: dst.h, rgb };
}
function upscale(img, f) {
  return resizeNearest(img, Math.round(img.w * f), Math.round(img.h * f));
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

const kite = decodeJpeg(fs.readFileSync(path.join(darknetData, 'kite.jpg')));
const scene720 = resizeNearest(kite, 1280, 720);
const scene1080 = resizeNearest(kite, 1920, 1080);
// JPEG frames, written by jpeg-js at quality 90 (4:4:4), except darknet's photos, which are
// copied byte for byte (4:2:0, as cameras write them).
const jpegs = {
  'frame-720p-small-face.jpg': paste(scene720, [{ img: upscale(face, 1.25), x: 700, y: 180 }]),
  'frame-720p-face.jpg': paste(scene720, [{ img: upscale(face, 1.5), x: 700, y: 180 }]),
  'frame-1080p-faces.jpg': paste(scene1080, [
    { img: upscale(face, 2), x: 200, y: 300 },
    { img: upscale(face, 1.5), x: 1300, y: 100 }, // near face-api's threshold
  ]),
  'frame-720p-dark.jpg': darken(paste(scene720, [{ img: upscale(face, 2), x: 500, y: 150 }]), 0.15),
  'astronaut-gray.jpg': gray(astro),
  'astronaut-dark.jpg': darken(astro, 0.3),
  'astronaut-edge-top-left.jpg': crop(astro, 190, 100, 322, 412), // the face cut by the left and top edges
  'astronaut-edge-bottom-right.jpg': crop(astro, 0, 0, 260, 170), // ... by the right and bottom edges
};
const darknetPhotos = ['person.jpg', 'scream.jpg', 'dog.jpg'];

const reference = { generator: 'face-api ' + faceapi.version + ', tfjs ' + tf.version.tfjs + ' (cpu backend)', score_threshold: 0.5, iou_threshold: 0.4, images: {} };
const inputs = [];
for (const [name, img] of Object.entries(images)) {
  writePng(img, path.join(out, name));
  inputs.push([name, img]);
}
for (const [name, img] of Object.entries(jpegs)) fs.writeFileSync(path.join(out, name), encodeJpeg(img, 90));
for (const name of darknetPhotos) fs.copyFileSync(path.join(darknetData, name), path.join(out, name));
for (const name of [...Object.keys(jpegs), ...darknetPhotos]) inputs.push([name, decodeJpeg(fs.readFileSync(path.join(out, name)))]);
for (const [name, img] of inputs) {
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
