"""A deep, fast-changing stack: recursion that goes up and down between 10
and 60 frames many thousand times a second (the worst case for reading a
stack while it runs)."""
import random


def down(n, target):
    if n >= target:
        return sum(range(20))
    return down(n + 1, target) + 1


while True:
    down(0, random.randint(10, 60))
