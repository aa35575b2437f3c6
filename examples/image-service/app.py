"""An image-processing web service, the classic profiling-tutorial app.

Flask, served by gunicorn (see gunicorn.conf.py):

    GET  /          an upload form (an image and an operation)
    GET  /health    "ok"
    POST /process   multipart: `image` (any format Pillow reads) and `op`;
                    answers the processed image as PNG

The operations are blur, sharpen, edges, grayscale, thumbnail (Pillow and
numpy: fast, the work is in C) and noise_reduction, a deliberately slow
pure-Python median filter that loops over every pixel: the hot spot a
profiler should find.
"""

import io
import os
import time

import numpy as np
from flask import Flask, Response, abort, request
from PIL import Image, ImageFilter

app = Flask(__name__)

# Refuse huge uploads (and huge images for the pure-Python filter).
app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024
MAX_PIXELS = 4_000_000
MAX_SLOW_PIXELS = 512 * 512

FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>image service</title></head>
<body>
<h1>image service</h1>
<form action="/process" method="post" enctype="multipart/form-data">
  <p><input type="file" name="image" accept="image/*" required></p>
  <p><select name="op">{options}</select></p>
  <p><button type="submit">process</button></p>
</form>
</body></html>
"""


def blur(img):
    return img.filter(ImageFilter.GaussianBlur(radius=2))


def sharpen(img):
    return img.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3))


def grayscale(img):
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8), mode="L")


def edges(img):
    """Sobel gradient magnitude, in numpy."""
    g = np.asarray(img.convert("L"), dtype=np.float32)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (
        p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2]
    )
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (
        p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:]
    )
    mag = np.hypot(gx, gy)
    peak = float(mag.max()) or 1.0
    return Image.fromarray((mag * (255.0 / peak)).astype(np.uint8), mode="L")


def thumbnail(img):
    out = img.copy()
    out.thumbnail((64, 64))
    return out


def noise_reduction(img):
    """A 3x3 median filter written the slow way: a Python loop over every
    pixel and channel (what a profile of this service shows first)."""
    rgb = img.convert("RGB")
    width, height = rgb.size
    src = list(rgb.getdata())
    out = list(src)
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            pixel = []
            for c in range(3):
                window = []
                for dy in (-1, 0, 1):
                    row = (y + dy) * width
                    for dx in (-1, 0, 1):
                        window.append(src[row + x + dx][c])
                window.sort()
                pixel.append(window[4])
            out[y * width + x] = tuple(pixel)
    result = Image.new("RGB", (width, height))
    result.putdata(out)
    return result


OPERATIONS = {
    "blur": blur,
    "sharpen": sharpen,
    "edges": edges,
    "grayscale": grayscale,
    "thumbnail": thumbnail,
    "noise_reduction": noise_reduction,
}


@app.get("/")
def index():
    options = "".join(f'<option value="{op}">{op}</option>' for op in OPERATIONS)
    return FORM.format(options=options)


@app.get("/health")
def health():
    return {"status": "ok", "pid": os.getpid()}


@app.post("/process")
def process():
    upload = request.files.get("image")
    op = request.form.get("op", "blur")
    if upload is None:
        abort(400, "missing the `image` field")
    func = OPERATIONS.get(op)
    if func is None:
        abort(400, f"unknown op {op!r}; one of {', '.join(OPERATIONS)}")
    try:
        img = Image.open(upload.stream)
        img.load()
    except Exception as e:  # Pillow raises many kinds for bad input
        abort(400, f"not an image: {e}")
    pixels = img.size[0] * img.size[1]
    if pixels > MAX_PIXELS or (func is noise_reduction and pixels > MAX_SLOW_PIXELS):
        abort(413, "image too large for this operation")
    t0 = time.perf_counter()
    result = func(img)
    elapsed_ms = (time.perf_counter() - t0) * 1000
    buf = io.BytesIO()
    result.save(buf, format="PNG")
    return Response(
        buf.getvalue(),
        mimetype="image/png",
        headers={"X-Op": op, "X-Op-Time-Ms": f"{elapsed_ms:.1f}"},
    )


if __name__ == "__main__":
    # For a quick look without gunicorn: python app.py
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
