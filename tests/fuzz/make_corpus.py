#!/usr/bin/python3
"""Writes the seed corpora (tests/fuzz/corpus/<target>/) and image_good.h.

Run from anywhere with Debian's python3 (python3-pil): /usr/bin/python3 make_corpus.py.
Seeds are small valid inputs of each format plus the malformed shapes the parsers must
refuse; the fuzzer mutates from there. Re-running rewrites the seeds it makes and leaves
any other file (e.g. a crash input added later as a regression test) alone.

Not made here: image_jpeg/restart_*.jpg, JPEGs with restart markers (every row of MCUs,
every 2 rows, every 7 MCUs) for the decoder's restart bands, which Debian 12's Pillow 9.4
cannot write; they were written once with libjpeg (restart_in_rows / restart_interval, as
tests/unit/test_be_image.c's encode_restart does)."""
import io
import os
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- proto (proto/msg.h)
MAGIC, VERSION = 0x4D574746, 2


def req(type_, id_=1, ts=0, deadline=0, thr=0.0, out=0, flags=0, top_k=0, camera=b"", payload=b""):
    return (struct.pack("<IHHQqqfBBHH", MAGIC, VERSION, type_, id_, ts, deadline, thr, out, flags,
                        top_k, len(camera)) + camera + struct.pack("<I", len(payload)) + payload)


def rep(type_, id_=1, status=0, w=0, h=0, kind=0, error=b"", dets=(), payload=b""):
    b = struct.pack("<IHHQiIIIIIBH", MAGIC, VERSION, type_, id_, status, w, h, 10, 20, 30, kind,
                    len(error)) + error + struct.pack("<I", len(dets))
    for cls, conf, x, y, bw, bh, label in dets:
        b += struct.pack("<ifffffB", cls, conf, x, y, bw, bh, len(label)) + label
    return b + struct.pack("<I", len(payload)) + payload


def proto():
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 12
    put("proto", "req_detect", req(1, 42, 1700000000000, 1700000001000, 0.25, 0, 0, 0, b"cam-1", jpeg))
    put("proto", "req_detect_jpeg_out", req(1, 7, out=1, top_k=5, camera=b"x" * 128, payload=b"\xff\xd8"))
    put("proto", "req_ping", req(3, 9))
    put("proto", "rep_result", rep(2, 42, 0, 768, 576, 0, b"", [
        (16, 0.91, 10, 20, 30, 40, b"dog"), (1, 0.5, 0, 0, 768, 576, b"bicycle")], b""))
    put("proto", "rep_classes", rep(2, 43, 0, 224, 224, 1, b"", [
        (435, 0.7, 0, 0, 0, 0, b"bathtub"), (876, 0.2, 0, 0, 0, 0, b"tub")], b"bathtub"))
    put("proto", "rep_error", rep(2, 44, -13, 0, 0, 0, b"Bogus marker length", [], b""))
    put("proto", "rep_pong", rep(4, 45, payload=b'{"model":"face","input":[416,416]}'))
    put("proto", "rep_truncated", rep(2, 46, dets=[(1, 0.5, 1, 2, 3, 4, b"cat")])[:-9])
    put("proto", "rep_lying_ndet", rep(2, 47)[:-8] + struct.pack("<II", 8192, 0))
    put("proto", "bad_magic", b"FGWX" + req(3)[4:])


# ---------------------------------------------------------------- images
def pil_image(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 37) & 255, (y * 59) & 255, ((x + y) * 23) & 255)
    return im.convert(mode)


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def jpeg_sof(data):
    """Offset of the SOFn marker segment of a JPEG."""
    i = 2
    while i + 4 <= len(data):
        m = data[i + 1]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            return i
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    raise ValueError("no SOF")


def jpeg():
    base = pil_bytes(pil_image(12, 8), "JPEG", quality=75)
    put("image_jpeg", "baseline_12x8.jpg", base)
    put("image_jpeg", "progressive.jpg", pil_bytes(pil_image(24, 16), "JPEG", progressive=True))
    put("image_jpeg", "gray.jpg", pil_bytes(pil_image(9, 7, "L"), "JPEG"))
    put("image_jpeg", "444_optimized.jpg", pil_bytes(pil_image(16, 16), "JPEG", subsampling=0,
                                                     optimize=True))
    put("image_jpeg", "422.jpg", pil_bytes(pil_image(17, 5), "JPEG", subsampling=1))
    put("image_jpeg", "cmyk.jpg", pil_bytes(pil_image(8, 8, "CMYK"), "JPEG"))
    put("image_jpeg", "tall_1x40.jpg", pil_bytes(pil_image(1, 40), "JPEG"))
    put("image_jpeg", "wide_200x2.jpg", pil_bytes(pil_image(200, 2), "JPEG"))
    # Refused: a header that claims too much, and no frame at all.
    sof = jpeg_sof(base)
    big = bytearray(base)
    big[sof + 5:sof + 9] = struct.pack(">HH", 5000, 5000)
    put("image_jpeg", "over_limits.jpg", bytes(big))
    put("image_jpeg", "tables_only.jpg", base[:sof])
    put("image_jpeg", "no_eoi.jpg", base[:-2])
    # The poison inputs of issue 11, defect 1: each once broke the backend's decoder for
    # every later frame (a bad marker right after SOI, a cut scan, a 0x0 frame, 12-bit
    # precision, a lossless frame).
    put("image_jpeg", "poison_bad_marker.jpg", b"\xff\xd8\xff\xc0")
    put("image_jpeg", "poison_cut_160.jpg", base[:160])
    zero = bytearray(base)
    zero[sof + 5:sof + 9] = b"\0\0\0\0"
    put("image_jpeg", "poison_0x0.jpg", bytes(zero))
    p12 = bytearray(base)
    p12[sof + 4] = 12
    put("image_jpeg", "poison_12bit.jpg", bytes(p12))
    lossless = bytearray(base)
    lossless[sof + 1] = 0xC3
    put("image_jpeg", "poison_lossless.jpg", bytes(lossless))
    return base


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(w, h, depth, ctype, rows, interlace=0, extra=b""):
    """A PNG from already packed scanlines (filter type 0 prepended here)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def png_adam7(w, h):
    """An interlaced 8-bit RGB PNG (Pillow writes none)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        xs = range(x0, w, dx)
        for y in range(y0, h, dy):
            if len(xs):
                raw += b"\0" + bytes(v for x in xs for v in ((x * 37) & 255, (y * 59) & 255, 7))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def png():
    base = pil_bytes(pil_image(12, 8), "PNG")
    put("image_png", "rgb_12x8.png", base)
    put("image_png", "rgba.png", pil_bytes(pil_image(7, 5, "RGBA"), "PNG"))
    put("image_png", "gray.png", pil_bytes(pil_image(9, 3, "L"), "PNG"))
    put("image_png", "gray_alpha.png", pil_bytes(pil_image(4, 4, "LA"), "PNG"))
    put("image_png", "palette.png", pil_bytes(pil_image(10, 6, "P"), "PNG", transparency=0))
    put("image_png", "gray16.png", png_raw(3, 2, 16, 0, [bytes(range(6)), bytes(range(6, 12))]))
    put("image_png", "gray1.png", png_raw(10, 3, 1, 0, [b"\xaa\xc0", b"\x55\x40", b"\xff\xc0"]))
    put("image_png", "rgb16.png", png_raw(2, 2, 16, 2, [bytes(range(12)), bytes(range(12, 24))]))
    put("image_png", "interlaced.png", png_adam7(11, 9))
    put("image_png", "one_pixel.png", png_raw(1, 1, 8, 2, [b"\x10\x20\x30"]))
    put("image_png", "text_chunk.png",
        png_raw(2, 1, 8, 0, [b"\x00\xff"], extra=png_chunk(b"tEXt", b"Comment\0hello") +
                png_chunk(b"gAMA", struct.pack(">I", 45455))))
    # Refused: a bomb header (issue 11: inside the limits it cost 0.66 s), cut data, bad CRC.
    bomb = bytearray(base)
    bomb[16:24] = struct.pack(">II", 100000, 100000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    put("image_png", "bomb_header.png", bytes(bomb))
    put("image_png", "truncated.png", base[:len(base) // 2])
    crc = bytearray(base)
    crc[-20] ^= 0xFF
    put("image_png", "bad_crc.png", bytes(crc))
    put("image_png", "zero_size.png", png_raw(0, 0, 8, 2, []))
    return base


def good_header(jpeg_good, png_good):
    def arr(name, data):
        lines = [", ".join("0x%02x" % b for b in data[i:i + 12]) for i in range(0, len(data), 12)]
        return "static const uint8_t %s[] = {\n    %s};\n" % (name, ",\n    ".join(lines))
    with open(os.path.join(HERE, "image_good.h"), "w") as f:
        f.write("/* Generated by make_corpus.py: a small valid frame per format, which the image\n"
                " * targets decode after every input to check the decoder still works. */\n"
                "#ifndef FG_FUZZ_IMAGE_GOOD_H\n#define FG_FUZZ_IMAGE_GOOD_H\n\n#include <stdint.h>\n\n")
        f.write(arr("good_jpeg", jpeg_good) + "\n" + arr("good_png", png_good))
        f.write("\n#endif\n")


# ---------------------------------------------------------------- body (gateway/body.h)
def body():
    b64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBD"
    put("body", "json", 'application/json\n{"image":"%s","camera":"cam-1","ts":1700000000000,'
        '"threshold":0.5}' % b64)
    put("body", "json_data_url", 'application/json; charset=utf-8\n{"image":"data:image/jpeg;base64,'
        '%s"}' % b64.replace("/", "_").replace("+", "-"))
    put("body", "json_bad_types", 'application/json\n{"image":5,"camera":["a"],"ts":1.5,'
        '"threshold":2}')
    put("body", "json_unicode", 'application/json\n{"image":"QUJD","camera":"\\u00e9\\ud83d\\ude00"}')
    put("body", "base64_padded", "text/plain\nQUJDRA==\n")
    put("body", "base64_bad", "text/plain\nQU=JD")
    mp = ("--XyZ\r\n"
          'Content-Disposition: form-data; name="camera"\r\n\r\n'
          "cam-7\r\n"
          "--XyZ\r\n"
          'Content-Disposition: form-data; name="image"; filename="a;b.jpg"\r\n'
          "Content-Type: image/jpeg\r\n\r\n"
          "\xff\xd8\xff\xe0 jpeg bytes\r\n"
          "--XyZ\r\n"
          "\r\n"
          "no headers\r\n"
          "--XyZ--\r\n")
    put("body", "multipart", "multipart/form-data; boundary=XyZ\n" + mp)
    put("body", "multipart_quoted", 'Multipart/Form-Data; charset=x; boundary="a b:c"\n'
        "preamble\r\n--a b:c\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--a b:c--")
    put("body", "multipart_unclosed", "multipart/form-data; boundary=q\n--q\r\nA: b\r\n\r\ndata")
    put("body", "content_type_only", 'image/jpeg; name="x;y"; filename=z')


# ---------------------------------------------------------------- config (gateway/config.h)
def config():
    with open(os.path.join(ROOT, "config", "framegate.conf"), "rb") as f:
        put("config", "framegate.conf", f.read())
    put("config", "models", "models = app, face\ndefault_model = app\nbackends = 2\n\n"
        "[model app]\ncfg = /usr/share/darknet/cfg/yolov3-tiny.cfg\nweights = /w\n"
        'names = "/a b # c"\ninput_size = 320\npreprocess = faceapi\nthreshold = 0.3\n'
        "top_k = 5\nmin_backends = 0\nbackend_args = --simulate-ms 5\n")
    put("config", "units", "max_body_bytes = 1.5M\nheader_timeout_ms = 0.5s\nidle_timeout_ms = 2m\n"
        "listen = [::1]:0\nlog_level = debug\ntarget_inflight_per_backend = 1e-3\n")
    put("config", "env", "model.x.cfg = /c\nmodel.x.weights = /w\nmodel.x.names = /n\n\n%%\n"
        "FRAMEGATE_MAX_BACKENDS=3\nFRAMEGATE_MODEL_X_THRESHOLD=0.9\nFRAMEGATE_MODEL_X_MAX_BACKENDS=1\n"
        "FRAMEGATE_CACHE=/tmp\n")
    put("config", "errors", 'listen = 0.0.0.0\nbackend_args = "unterminated\n[model]\n')
    put("config", "quotes", 'backend_args = a"b\nruntime_dir = "x #y" # c\n')
    # Regressions: listen hosts that --print-config wrote back as text that did not load.
    put("config", "listen_hash", 'listen = "a #b:80"\n')
    put("config", "listen_bracket", 'listen = "a]:b:80"\n')


# ---------------------------------------------------------------- http (gateway/server.h)
def http():
    put("http", "get_healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    put("http", "pipelined_gets", "GET /metrics HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n"
        "GET /v1/models HTTP/1.1\r\n\r\nGET /v1/backends HTTP/1.1\r\n\r\nGET /nope?x=1 HTTP/1.1\r\n"
        "\r\nPOST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    img = "\x00\xd8\xff\xe0jpeg"
    put("http", "detect_jpeg", "POST /v1/detect?camera=c%%20d&ts=17&threshold=0.5&format=json "
        "HTTP/1.1\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s" % (len(img), img))
    for fmt, first in (("jpeg", "\x01"), ("text", "\x04"), ("json", "\x05"), ("json", "\x06"),
                       ("json", "\x07"), ("json", "Q"), ("json", "B")):
        body = first + "img"
        put("http", "detect_%s_%02x" % (fmt, ord(first)),
            "POST /v1/models/face/detect?format=%s&top_k=3 HTTP/1.1\r\nContent-Type: "
            "application/octet-stream\r\nContent-Length: %d\r\n\r\n%s" % (fmt, len(body), body))
    js = '{"image":"AAECAw==","camera":"cam","ts":5,"threshold":0.1}'
    put("http", "detect_json", "POST /v1/detect?model=nope HTTP/1.1\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n%s" % (len(js), js))
    mp = ("--b\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\ncam\r\n"
          "--b\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Type: image/jpeg\r\n\r\n"
          "\x00a\r\n--b\r\nContent-Type: image/png\r\n\r\n\x05b\r\n--b--\r\n")
    put("http", "detect_multipart", "POST /v1/detect HTTP/1.1\r\nContent-Type: multipart/form-data; "
        "boundary=b\r\nContent-Length: %d\r\n\r\n%s" % (len(mp), mp))
    put("http", "chunked", "POST /v1/detect HTTP/1.1\r\nContent-Type: image/jpeg\r\nTransfer-Encoding:"
        " chunked\r\n\r\n3;ext=1\r\n\x00ab\r\n2\r\ncd\r\n0\r\nTrailer: x\r\n\r\nGET /healthz HTTP/1.1"
        "\r\nConnection: close\r\n\r\n")
    put("http", "expect_continue", "POST /v1/detect HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type:"
        " image/jpeg\r\nContent-Length: 2\r\n\r\n\x00z")
    put("http", "errors", "POST /v1/detect HTTP/1.1\r\nContent-Type: image/jpeg\r\n\r\n")
    put("http", "too_large", "POST /v1/detect HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
    put("http", "unsupported", "POST /v1/detect HTTP/1.1\r\nContent-Type: text/html\r\n"
        "Content-Length: 1\r\n\r\nx")
    put("http", "http10", "GET /healthz HTTP/1.0\r\n\r\n")
    put("http", "smuggling", "POST /v1/detect HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: "
        "chunked\r\n\r\n0\r\n\r\n")
    put("http", "bare_crlf", "\r\n\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
    put("http", "garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    put("http", "long_header", "GET /healthz HTTP/1.1\r\nX: " + "a" * 5000 + "\r\n\r\n")


# ---------------------------------------------------------------- mjpeg (gateway/mjpeg.h)
def mjpeg():
    ct = "multipart/x-mixed-replace; boundary=b\n"
    j = "\xff\xd8\xff\xe0" + "x" * 40 + "\xff\xd9"
    put("mjpeg", "two_parts", "\x07" + ct + "--b\r\nContent-Type: image/jpeg\r\nContent-Length: "
        f"{len(j)}\r\n\r\n{j}\r\n--b\r\nContent-Type: image/jpeg\r\n\r\n{j}\r\n--b\r\n")
    put("mjpeg", "no_length", "\x01" + ct + f"--b\r\n\r\n{j}\r\n--b\r\n\r\n{j}\n--b--\r\n")
    put("mjpeg", "quoted_dashes", '\x03multipart/x-mixed-replace; boundary="--b"\n'
        f"preamble\r\n--b  \r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\n\n{j}\n--b\n")
    put("mjpeg", "too_big", "\x05" + ct + "--b\r\nContent-Length: 999999\r\n\r\n")
    put("mjpeg", "bad_length", "\x02" + ct + "--b\r\nContent-Length: 12 34\r\n\r\n")
    put("mjpeg", "not_jpeg", "\x09" + ct + "--b\r\nContent-Length: 5\r\n\r\nhello\r\n--b\r\n")
    put("mjpeg", "not_multipart", "\x00image/jpeg\n" + j)


def main():
    proto()
    mjpeg()
    good_header(jpeg(), png())
    body()
    config()
    http()


if __name__ == "__main__":
    main()
