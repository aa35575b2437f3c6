"""A small CPU-bound program for pyrometer's demo: a pure-Python image
pipeline (blur, edge detection, histogram) on a synthetic image, run in a
loop for a fixed time, with a background thread that mostly sleeps."""

import math
import sys
import threading
import time


def make_image(width, height):
    return [[(x * y + x + y) % 256 for x in range(width)] for y in range(height)]


def blur(img):
    h, w = len(img), len(img[0])
    out = [[0] * w for _ in range(h)]
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            total = 0
            for dy in (-1, 0, 1):
                row = img[y + dy]
                total += row[x - 1] + row[x] + row[x + 1]
            out[y][x] = total // 9
    return out


def edges(img):
    h, w = len(img), len(img[0])
    out = [[0] * w for _ in range(h)]
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            gx = img[y][x + 1] - img[y][x - 1]
            gy = img[y + 1][x] - img[y - 1][x]
            out[y][x] = int(math.sqrt(gx * gx + gy * gy))
    return out


def histogram(img):
    counts = [0] * 256
    for row in img:
        for v in row:
            counts[min(v, 255)] += 1
    return counts


class Pipeline:
    def __init__(self, size):
        self.image = make_image(size, size)

    def run_once(self):
        smooth = blur(self.image)
        outline = edges(smooth)
        return histogram(outline)


def heartbeat(stop):
    while not stop.wait(0.5):
        pass


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    stop = threading.Event()
    threading.Thread(target=heartbeat, args=(stop,), name="heartbeat", daemon=True).start()
    pipeline = Pipeline(120)
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        pipeline.run_once()
        rounds += 1
    stop.set()
    print(f"cpu_demo: {rounds} rounds in {seconds:.0f} s")


if __name__ == "__main__":
    main()
