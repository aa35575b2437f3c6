# Allocates known amounts at known lines, for `record --memory` accuracy:
# 100 MB churned in churn_a, 300 MB churned in churn_b, 50 MB kept alive
# and growing in grow_c, spread over about 8 seconds.
import time

kept = []


def churn_a():
    for _ in range(10):
        block = bytearray(125000)


def churn_b():
    for _ in range(30):
        block = bytearray(125000)


def grow_c():
    kept.append(bytearray(625000))


start = time.monotonic()
for i in range(80):
    churn_a()
    churn_b()
    grow_c()
    time.sleep(0.1)
print("done", round(time.monotonic() - start, 2), flush=True)
