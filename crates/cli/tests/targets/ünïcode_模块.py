"""Target of crates/cli/tests/dump.rs: non-ASCII function, class, thread
and file names. Prints one JSON line (see _truth.py), then blocks."""
import threading
import time

import _truth

HERE = _truth.markers(__file__)
FOREVER = 3600 * 24


def 计算(数值):
    time.sleep(FOREVER)  # @计算-block
    return 数值


class 类:
    def 方法(self):
        return 计算(2)  # @方法-call


def main():
    worker = threading.Thread(name="工作者-α", target=lambda: 类().方法(), daemon=True)
    worker.start()
    threads = {
        worker: ("计算", HERE["计算-block"], True),
        threading.main_thread(): ("计算", HERE["计算-block"], True),
    }

    def report():
        snap = _truth.wait_parked(threads)
        docs = [_truth.thread_doc(t, snap[t], True) for t in threads]
        me = threading.current_thread()
        docs.append(_truth.thread_doc(me, _truth.self_stack(HERE["reporter-block"]), True))
        _truth.emit({"markers": HERE, "threads": docs})
        time.sleep(FOREVER)  # @reporter-block

    threading.Thread(name="reporter", target=report, daemon=True).start()
    计算(1)  # @main-call


if __name__ == "__main__":
    main()
