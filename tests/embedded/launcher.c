/*
 * A program that embeds CPython, as an application server, a game or a
 * plugin host would: the interpreter lives in libpython, not in a python
 * executable, and the process's name and executable are the launcher's.
 *
 * Usage: launcher SCRIPT [ARGS...]
 *
 * The script runs in the main thread (PyRun_SimpleFileExFlags), after a
 * snippet run with PyRun_SimpleString has set sys.argv and marked the
 * interpreter as embedded.
 *
 * Built by crates/cli/tests/embedded.rs:
 *   gcc launcher.c $(python3.11-config --cflags) \
 *       $(python3.11-config --embed --ldflags) -o launcher
 * (Debian: python3.11-dev provides python3.11-config, the headers and
 * libpython3.11.so.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
        return 2;
    }
    const char *script = argv[1];
    FILE *fp = fopen(script, "r");
    if (fp == NULL) {
        perror(script);
        return 2;
    }

    Py_Initialize();

    /* sys.argv = [SCRIPT, ARGS...] and sys.embedded_by = "launcher". */
    PyObject *sys_argv = PyList_New(0);
    if (sys_argv == NULL) {
        PyErr_Print();
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        PyObject *arg = PyUnicode_DecodeFSDefault(argv[i]);
        if (arg == NULL || PyList_Append(sys_argv, arg) < 0) {
            PyErr_Print();
            return 1;
        }
        Py_DECREF(arg);
    }
    if (PySys_SetObject("argv", sys_argv) < 0) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(sys_argv);
    if (PyRun_SimpleString("import sys\nsys.embedded_by = 'launcher'\n") != 0) {
        return 1;
    }

    /* Closes fp. */
    int rc = PyRun_SimpleFileExFlags(fp, script, 1, NULL);
    if (Py_FinalizeEx() < 0) {
        return 120;
    }
    return rc == 0 ? 0 : 1;
}
