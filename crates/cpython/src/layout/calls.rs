//! 3.11+: the instructions that push a Python frame inline, per version.
//!
//! From 3.11 a Python-to-Python call does not recurse in C: the calling
//! instruction pushes the callee's frame on the thread's data stack and the
//! same evaluation loop goes on in it. While the callee runs, its caller is
//! therefore stopped in one of a few instructions (a `CALL`, a property or
//! `__getitem__` lookup, a `FOR_ITER` or `SEND` into a generator…). A frame
//! reached from C (a signal handler, `__del__`, a C function calling back)
//! is linked through an entry frame instead: a C-stack shim (3.12+) or an
//! `is_entry` flag (3.11).
//!
//! A sampler that copies a running thread's frames can catch a caller at a
//! moment it was not calling (it was still the innermost frame, or had
//! returned): such a stack never existed. The reader drops it as torn when
//! the caller's instruction pointer is not on one of these instructions.
//!
//! The tables name every opcode of each family (the specialized and
//! instrumented variants too): a code object's bytecode is read once, and
//! an instruction specializes in place later, so a call site is known by
//! any opcode its family may show. Opcode numbers and inline cache counts
//! come from each version's `dis`/`opcode` modules (`_all_opmap`,
//! `deoptmap`, `_specializations`, `_inline_cache_entries`); which families
//! push frames inline, from `Python/ceval.c` (3.11) and `Python/bytecodes.c`
//! (3.12+). `tools/opcodes/cache_table.py` prints both tables from an
//! interpreter; `tests/call_kinds_live.rs` compares them with every
//! installed one.

/// What an opcode says about a frame stopped on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOp {
    /// The instruction never pushes a frame inline.
    NotCall,
    /// It may push one.
    Call {
        /// Code units it spans: itself and its inline cache entries.
        units: u8,
        /// 3.13+: it sets the caller's `return_offset` (never 0) before
        /// pushing; a frame that has not called inline yet shows 0.
        sets_return_offset: bool,
    },
    /// It hides the real instruction (`INSTRUMENTED_LINE`,
    /// `INSTRUMENTED_INSTRUCTION`, written over it while a tracer or
    /// `sys.monitoring` is active): it may be a call of any family.
    Hidden,
}

/// One version's call instructions, by opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOps {
    /// Per opcode.
    pub ops: [CallOp; 256],
    /// Per opcode: the inline cache entries that follow it in the bytecode,
    /// or [`UNKNOWN_LENGTH`] for one that hides its instruction. Walking a
    /// code object instruction by instruction never takes a cache entry
    /// for an instruction.
    pub caches: [u8; 256],
    /// The plain `CALL` opcode (for synthetic images and tests).
    pub call: u8,
    /// 3.13+: `EXIT_INIT_CHECK`, the first instruction of `_Py_InitCleanup`,
    /// the shim frame `CALL_ALLOC_AND_ENTER_INIT` pushes under `__init__`
    /// (no compiled code starts with it).
    pub init_check: Option<u8>,
    /// The most code units any call instruction spans (what a hidden one
    /// may span).
    pub max_units: u8,
}

/// The length of an instruction hidden by instrumentation is not known.
pub const UNKNOWN_LENGTH: u8 = u8::MAX;

/// A family of opcodes (a base instruction and its variants) that share a
/// size and behaviour.
struct Family<'a> {
    opcodes: &'a [u8],
    units: u8,
    sets_return_offset: bool,
}

impl CallOps {
    const fn build(
        call: u8,
        init_check: Option<u8>,
        families: &[Family<'_>],
        hidden: &[u8],
        cache_groups: &[(u8, &[u8])],
    ) -> CallOps {
        let mut caches = [0u8; 256];
        let mut g = 0;
        while g < cache_groups.len() {
            let (n, opcodes) = cache_groups[g];
            let mut i = 0;
            while i < opcodes.len() {
                caches[opcodes[i] as usize] = n;
                i += 1;
            }
            g += 1;
        }
        let mut ops = [CallOp::NotCall; 256];
        let mut max_units = 1;
        let mut f = 0;
        while f < families.len() {
            let family = &families[f];
            if family.units > max_units {
                max_units = family.units;
            }
            let mut i = 0;
            while i < family.opcodes.len() {
                ops[family.opcodes[i] as usize] = CallOp::Call {
                    units: family.units,
                    sets_return_offset: family.sets_return_offset,
                };
                i += 1;
            }
            f += 1;
        }
        let mut h = 0;
        while h < hidden.len() {
            ops[hidden[h] as usize] = CallOp::Hidden;
            caches[hidden[h] as usize] = UNKNOWN_LENGTH;
            h += 1;
        }
        CallOps {
            ops,
            caches,
            call,
            init_check,
            max_units,
        }
    }

    /// What `opcode` says.
    pub fn op(&self, opcode: u8) -> CallOp {
        self.ops[opcode as usize]
    }

    /// The inline cache entries after `opcode` (`None`: not known).
    pub fn caches_after(&self, opcode: u8) -> Option<u8> {
        match self.caches[opcode as usize] {
            UNKNOWN_LENGTH => None,
            n => Some(n),
        }
    }
}

/// 3.11: `CALL` (4 caches) and `BINARY_SUBSCR` (4 caches; its `GETITEM`
/// variant pushes `__getitem__`). The caller's `prev_instr` is left on the
/// instruction's last cache unit.
pub const PY311: CallOps = CallOps::build(
    171,
    None,
    &[
        // CALL, CALL_ADAPTIVE, CALL_PY_EXACT_ARGS, CALL_PY_WITH_DEFAULTS
        Family {
            opcodes: &[171, 22, 23, 24],
            units: 5,
            sets_return_offset: false,
        },
        // BINARY_SUBSCR and its 5 variants
        Family {
            opcodes: &[25, 17, 18, 19, 20, 21],
            units: 5,
            sets_return_offset: false,
        },
    ],
    &[],
    &CACHES_311,
);

/// 3.12: `CALL` (3 caches), `BINARY_SUBSCR` (1), `LOAD_ATTR` (9: property
/// and `__getattribute__` variants), `FOR_ITER` and `SEND` (1 each: into
/// generators). `prev_instr` is left on the last cache unit.
pub const PY312: CallOps = CallOps::build(
    171,
    None,
    &[
        // CALL and its 17 variants; INSTRUMENTED_CALL (241)
        Family {
            opcodes: &[
                171, 23, 24, 28, 29, 34, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 56, 241,
            ],
            units: 4,
            sets_return_offset: false,
        },
        // CALL_FUNCTION_EX (142), INSTRUMENTED_CALL_FUNCTION_EX (244)
        Family {
            opcodes: &[142, 244],
            units: 1,
            sets_return_offset: false,
        },
        // BINARY_SUBSCR and its 4 variants
        Family {
            opcodes: &[25, 19, 20, 21, 22],
            units: 2,
            sets_return_offset: false,
        },
        // LOAD_ATTR and its 10 variants
        Family {
            opcodes: &[106, 70, 72, 73, 76, 77, 78, 79, 80, 81, 82],
            units: 10,
            sets_return_offset: false,
        },
        // FOR_ITER, its 4 variants, INSTRUMENTED_FOR_ITER (248); SEND,
        // SEND_GEN (168)
        Family {
            opcodes: &[93, 62, 63, 64, 65, 248, 123, 168],
            units: 2,
            sets_return_offset: false,
        },
    ],
    // INSTRUMENTED_INSTRUCTION, INSTRUMENTED_LINE
    &[253, 254],
    &CACHES_312,
);

/// 3.13: as 3.12, plus `CALL_KW` and `CALL_FUNCTION_EX` pushing Python
/// functions, and `EXIT_INIT_CHECK`: the shim frame `CALL_ALLOC_AND_ENTER_INIT`
/// pushes under `__init__` stops there. `instr_ptr` is the instruction's
/// first unit, and every inline push sets the caller's `return_offset`.
pub const PY313: CallOps = CallOps::build(
    53,
    Some(13),
    &[
        // CALL and its 20 variants (162–181); INSTRUMENTED_CALL (244)
        Family {
            opcodes: &[
                53, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177,
                178, 179, 180, 181, 244,
            ],
            units: 4,
            sets_return_offset: true,
        },
        // CALL_KW (57), CALL_FUNCTION_EX (54) and their instrumented forms
        // (245, 246)
        Family {
            opcodes: &[57, 54, 245, 246],
            units: 1,
            sets_return_offset: true,
        },
        // BINARY_SUBSCR and its 5 variants
        Family {
            opcodes: &[5, 157, 158, 159, 160, 161],
            units: 2,
            sets_return_offset: true,
        },
        // LOAD_ATTR and its 12 variants
        Family {
            opcodes: &[
                82, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202,
            ],
            units: 10,
            sets_return_offset: true,
        },
        // FOR_ITER, its 4 variants, INSTRUMENTED_FOR_ITER (243); SEND,
        // SEND_GEN (208)
        Family {
            opcodes: &[72, 187, 188, 189, 190, 243, 104, 208],
            units: 2,
            sets_return_offset: true,
        },
        // EXIT_INIT_CHECK: the `__init__` shim's only instruction before
        // its return; the shim frame never calls anything else.
        Family {
            opcodes: &[13],
            units: 1,
            sets_return_offset: false,
        },
    ],
    // INSTRUMENTED_INSTRUCTION, INSTRUMENTED_LINE
    &[247, 254],
    &CACHES_313,
);

/// 3.14: as 3.13, with subscripts moved into `BINARY_OP` (its
/// `SUBSCR_GETITEM` variant pushes `__getitem__`; 5 caches) and `CALL_KW`
/// grown 3 caches. Numbers from CPython 3.14.2's `_opcode_metadata.py` and
/// `opcode._cache_format`. `INSTRUMENTED_CALL_FUNCTION_EX` never pushes
/// inline and is left out.
pub const PY314: CallOps = CallOps::build(
    52,
    Some(11),
    &[
        // CALL and its 20 variants; INSTRUMENTED_CALL (250)
        Family {
            opcodes: &[
                52, 143, 144, 145, 146, 147, 148, 149, 150, 154, 155, 156, 157, 158, 159, 160, 161,
                162, 163, 164, 165, 250,
            ],
            units: 4,
            sets_return_offset: true,
        },
        // CALL_KW, its 3 variants, INSTRUMENTED_CALL_KW (251)
        Family {
            opcodes: &[55, 151, 152, 153, 251],
            units: 4,
            sets_return_offset: true,
        },
        // CALL_FUNCTION_EX
        Family {
            opcodes: &[4],
            units: 1,
            sets_return_offset: true,
        },
        // BINARY_OP and its 15 variants
        Family {
            opcodes: &[
                44, 3, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142,
            ],
            units: 6,
            sets_return_offset: true,
        },
        // LOAD_ATTR and its 13 variants
        Family {
            opcodes: &[
                80, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189,
            ],
            units: 10,
            sets_return_offset: true,
        },
        // FOR_ITER, its 4 variants, INSTRUMENTED_FOR_ITER (237); SEND,
        // SEND_GEN (197)
        Family {
            opcodes: &[70, 171, 172, 173, 174, 237, 106, 197],
            units: 2,
            sets_return_offset: true,
        },
        // EXIT_INIT_CHECK (the `__init__` shim)
        Family {
            opcodes: &[11],
            units: 1,
            sets_return_offset: false,
        },
    ],
    // INSTRUMENTED_INSTRUCTION, INSTRUMENTED_LINE
    &[238, 254],
    &CACHES_314,
);

/// 3.11: opcodes followed by inline caches, by count (printed by
/// `tools/opcodes/cache_table.py`).
const CACHES_311: [(u8, &[u8]); 5] = [
    (
        1,
        &[
            3, 4, 5, 6, 7, 8, 13, 14, 16, 60, 64, 65, 66, 67, 72, 73, 76, 77, 78, 79, 80, 81, 92,
            113, 121, 122, 127, 141, 143, 166, 168, 169, 170, 177, 178, 179, 180,
        ],
    ),
    (2, &[26, 27, 28, 29, 107]),
    (
        4,
        &[
            17, 18, 19, 20, 21, 22, 23, 24, 25, 39, 40, 41, 42, 43, 95, 106, 153, 154, 158, 159,
            171,
        ],
    ),
    (5, &[47, 48, 55, 116]),
    (10, &[56, 57, 58, 59, 62, 63, 160]),
];

/// 3.12: opcodes followed by inline caches, by count (printed by
/// `tools/opcodes/cache_table.py`).
const CACHES_312: [(u8, &[u8]); 4] = [
    (
        1,
        &[
            6, 7, 8, 10, 13, 14, 16, 18, 19, 20, 21, 22, 25, 57, 58, 59, 60, 62, 63, 64, 65, 66,
            67, 92, 93, 107, 122, 123, 141, 159, 160, 161, 166, 167, 168, 237, 248,
        ],
    ),
    (
        3,
        &[
            23, 24, 28, 29, 34, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 56, 171, 241,
        ],
    ),
    (4, &[95, 111, 112, 113, 116, 148, 153]),
    (9, &[70, 72, 73, 76, 77, 78, 79, 80, 81, 82, 106]),
];

/// 3.13: opcodes followed by inline caches, by count (printed by
/// `tools/opcodes/cache_table.py`).
const CACHES_313: [(u8, &[u8]); 4] = [
    (
        1,
        &[
            3, 5, 39, 45, 58, 59, 70, 72, 77, 93, 97, 98, 99, 100, 104, 117, 150, 151, 152, 153,
            154, 155, 156, 157, 158, 159, 160, 161, 182, 183, 184, 185, 186, 187, 188, 189, 190,
            205, 206, 208, 212, 213, 220, 221, 222, 242, 243, 249, 250, 251, 252, 253,
        ],
    ),
    (
        3,
        &[
            40, 53, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177,
            178, 179, 180, 181, 214, 215, 216, 217, 218, 219, 244,
        ],
    ),
    (4, &[91, 108, 203, 204, 209, 210, 211]),
    (
        9,
        &[
            82, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202,
        ],
    ),
];

/// 3.14: opcodes followed by inline caches, by count (printed by
/// `tools/opcodes/cache_table.py`).
const CACHES_314: [(u8, &[u8]); 5] = [
    (
        1,
        &[
            38, 56, 57, 70, 75, 96, 100, 101, 102, 103, 106, 119, 166, 167, 168, 169, 170, 171,
            172, 173, 174, 175, 176, 194, 195, 197, 201, 202, 209, 210, 211, 237, 241, 242, 243,
            244, 249, 253, 255,
        ],
    ),
    (
        3,
        &[
            39, 52, 55, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157,
            158, 159, 160, 161, 162, 163, 164, 165, 203, 204, 205, 206, 207, 208, 250, 251,
        ],
    ),
    (4, &[92, 110, 192, 193, 198, 199, 200]),
    (
        5,
        &[
            3, 44, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142,
        ],
    ),
    (
        9,
        &[
            80, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189,
        ],
    ),
];
