//! The XDP program, assembled by hand: no clang, no object file, no loader
//! library. It parses Ethernet → IPv4 (no options, not a fragment) or IPv6
//! (UDP as the first next header) → UDP, compares the destination address and
//! port with the listen addresses, and redirects matches into the XSKMAP slot
//! of the receive queue (`bpf_redirect_map(map, rx_queue_index, XDP_PASS)`:
//! without a socket in that slot the packet goes to the kernel). Everything
//! else (ARP, ICMP, TCP, VLAN tags, IPv4 options, fragments, IPv6 extension
//! headers, other ports) gets `XDP_PASS` and is counted in slot 0 of a
//! per-CPU array (plain load, add, store: each CPU has its own copy, so no
//! atomics). A match whose queue has no socket falls back to `XDP_PASS`
//! inside `bpf_redirect_map` and is not counted.

use std::net::{IpAddr, SocketAddr};

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little endian
    /// bitfield order; big endian swaps them).
    regs: u8,
    off: i16,
    imm: i32,
}

const fn regs(dst: u8, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (src << 4) | dst
    } else {
        (dst << 4) | src
    }
}

// Instruction classes and fields (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61;
const LDX_MEM_H: u8 = 0x69;
const LDX_MEM_B: u8 = 0x71;
const LDX_MEM_DW: u8 = 0x79;
const STX_MEM_DW: u8 = 0x7b;
const ST_MEM_W: u8 = 0x62;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_ADD_K: u8 = 0x07;
const ALU64_AND_K: u8 = 0x57;
const JMP_JGT_X: u8 = 0x2d;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JA: u8 = 0x05;
const JMP32_JNE_K: u8 = 0x56;
const JMP_CALL: u8 = 0x85;
const JMP_EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// `BPF_FUNC_map_lookup_elem`.
const FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_redirect_map`.
const FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_DROP`, `XDP_PASS`.
#[cfg(test)]
pub(crate) const XDP_DROP: i32 = 1;
pub(crate) const XDP_PASS: i32 = 2;

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
/// The read-only frame pointer.
const R10: u8 = 10;

/// Jump targets, resolved when the program is finished.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Pass,
    Redirect,
    /// After the pass counter: return `XDP_PASS`.
    Return,
    V6,
    /// The n-th IPv4 / IPv6 candidate's failure target: the next candidate.
    Next(usize),
}

struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, target) of jumps to patch.
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            insns: Vec::with_capacity(128),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    /// `dst = *(size *)(src + off)`.
    fn load(&mut self, code: u8, dst: u8, src: u8, off: i16) {
        self.raw(code, dst, src, off, 0);
    }
    /// Pass unless `[data, data + len)` lies inside the packet (the
    /// verifier's bounds-check pattern: `r4 = data + len; if r4 > end`).
    fn need(&mut self, len: i32) {
        self.raw(ALU64_MOV_X, R4, R2, 0, 0);
        self.raw(ALU64_ADD_K, R4, 0, 0, len);
        self.jump(JMP_JGT_X, R4, R3, 0, Label::Pass);
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, to) in std::mem::take(&mut self.fixups) {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map(|(_, i)| *i)
                .expect("every jump target is placed");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("program is small");
        }
        self.insns
    }
}

/// The 32-bit word at `bytes[at..at + 4]` as a packet load sees it.
fn word(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The 16-bit network-order value `v` as a packet load sees it.
fn half(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

const ETH_LEN: i32 = 14;
const IPV4_LEN: i32 = 20;
const IPV6_LEN: i32 = 40;
const UDP_LEN: i32 = 8;

/// Assemble the program for `listen` (addresses with resolved ports; an
/// unspecified address matches every destination of its family).
/// `map_fd` is the XSKMAP; `passed_fd` the per-CPU array whose slot 0
/// counts the frames given to the kernel (not those `miss` passes);
/// `miss` is the action when the queue has no socket (`XDP_PASS` when
/// serving; tests use `XDP_DROP` to see matches).
pub(crate) fn assemble(listen: &[SocketAddr], map_fd: i32, passed_fd: i32, miss: i32) -> Vec<Insn> {
    let mut a = Asm::new();
    // r6 = ctx; r2 = data; r3 = data_end (struct xdp_md offsets 0 and 4).
    a.raw(ALU64_MOV_X, R6, R1, 0, 0);
    a.load(LDX_MEM_W, R2, R6, 0);
    a.load(LDX_MEM_W, R3, R6, 4);
    a.need(ETH_LEN);
    a.load(LDX_MEM_H, R5, R2, 12);
    a.jump(JMP_JNE_K, R5, 0, half(0x0800), Label::V6);

    // IPv4: version 4, IHL 5, protocol UDP, neither MF nor an offset.
    let v4: Vec<_> = listen.iter().filter(|a| a.is_ipv4()).collect();
    if v4.is_empty() {
        a.jump(JMP_JA, 0, 0, 0, Label::Pass);
    } else {
        a.need(ETH_LEN + IPV4_LEN + UDP_LEN);
        a.load(LDX_MEM_B, R5, R2, 14);
        a.jump(JMP_JNE_K, R5, 0, 0x45, Label::Pass);
        a.load(LDX_MEM_B, R5, R2, 23);
        a.jump(JMP_JNE_K, R5, 0, 17, Label::Pass);
        a.load(LDX_MEM_H, R5, R2, 20);
        a.raw(ALU64_AND_K, R5, 0, 0, half(0x3fff));
        a.jump(JMP_JNE_K, R5, 0, 0, Label::Pass);
        a.load(LDX_MEM_W, R7, R2, 30); // destination address
        a.load(LDX_MEM_H, R8, R2, 36); // destination port
        candidates(&mut a, &v4, 0, |a, addr, next| {
            if let IpAddr::V4(ip) = addr.ip()
                && !ip.is_unspecified()
            {
                a.jump(JMP32_JNE_K, R7, 0, word(&ip.octets(), 0), next);
            }
        });
    }

    a.label(Label::V6);
    a.jump(JMP_JNE_K, R5, 0, half(0x86dd), Label::Pass);
    let v6: Vec<_> = listen.iter().filter(|a| a.is_ipv6()).collect();
    if v6.is_empty() {
        a.jump(JMP_JA, 0, 0, 0, Label::Pass);
    } else {
        a.need(ETH_LEN + IPV6_LEN + UDP_LEN);
        a.load(LDX_MEM_B, R5, R2, 14);
        a.raw(ALU64_AND_K, R5, 0, 0, 0xf0);
        a.jump(JMP_JNE_K, R5, 0, 0x60, Label::Pass);
        a.load(LDX_MEM_B, R5, R2, 20); // next header
        a.jump(JMP_JNE_K, R5, 0, 17, Label::Pass);
        a.load(LDX_MEM_H, R8, R2, 56); // destination port
        candidates(&mut a, &v6, v4.len(), |a, addr, next| {
            if let IpAddr::V6(ip) = addr.ip()
                && !ip.is_unspecified()
            {
                let o = ip.octets();
                for i in 0..4 {
                    // Destination address: bytes 24..40 of the IPv6 header.
                    a.load(LDX_MEM_W, R7, R2, 38 + 4 * i as i16);
                    a.jump(JMP32_JNE_K, R7, 0, word(&o, 4 * i), next);
                }
            }
        });
    }

    a.label(Label::Redirect);
    // bpf_redirect_map(&xskmap, ctx->rx_queue_index, miss)
    a.raw(LD_IMM64, R1, PSEUDO_MAP_FD, 0, map_fd);
    a.raw(0, 0, 0, 0, 0);
    a.load(LDX_MEM_W, R2, R6, 16);
    a.raw(ALU64_MOV_K, R3, 0, 0, miss);
    a.raw(JMP_CALL, 0, 0, 0, FUNC_REDIRECT_MAP);
    a.raw(JMP_EXIT, 0, 0, 0, 0);

    a.label(Label::Pass);
    // Count it: r0 = bpf_map_lookup_elem(&passed, &(u32){0}); if (r0)
    // *(u64 *)r0 += 1. The key lives on the stack at fp-4.
    a.raw(ST_MEM_W, R10, 0, -4, 0);
    a.raw(ALU64_MOV_X, R2, R10, 0, 0);
    a.raw(ALU64_ADD_K, R2, 0, 0, -4);
    a.raw(LD_IMM64, R1, PSEUDO_MAP_FD, 0, passed_fd);
    a.raw(0, 0, 0, 0, 0);
    a.raw(JMP_CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM);
    a.jump(JMP_JEQ_K, R0, 0, 0, Label::Return);
    a.load(LDX_MEM_DW, R1, R0, 0);
    a.raw(ALU64_ADD_K, R1, 0, 0, 1);
    a.raw(STX_MEM_DW, R0, R1, 0, 0);
    a.label(Label::Return);
    a.raw(ALU64_MOV_K, R0, 0, 0, XDP_PASS);
    a.raw(JMP_EXIT, 0, 0, 0, 0);
    a.finish()
}

/// Emit one test per candidate address: the port must match, then
/// `addr_test` jumps to the candidate's `next` label on an address
/// mismatch; a full match jumps to the redirect. After the last: pass.
fn candidates(
    a: &mut Asm,
    list: &[&SocketAddr],
    first: usize,
    addr_test: impl Fn(&mut Asm, &SocketAddr, Label),
) {
    for (i, addr) in list.iter().enumerate() {
        let next = Label::Next(first + i);
        a.jump(JMP_JNE_K, R8, 0, half(addr.port()), next);
        addr_test(a, addr, next);
        a.jump(JMP_JA, 0, 0, 0, Label::Redirect);
        a.label(next);
    }
    a.jump(JMP_JA, 0, 0, 0, Label::Pass);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        for listen in [
            addrs(&["10.0.0.1:53"]),
            addrs(&["[fd00::1]:53"]),
            addrs(&["0.0.0.0:5353", "[::]:53", "10.1.1.1:53", "[fd00::2]:8053"]),
            addrs(&[]),
        ] {
            let p = assemble(&listen, 3, 4, XDP_PASS);
            assert!(p.len() < 4096);
            for (i, insn) in p.iter().enumerate() {
                let class = insn.code & 0x07;
                let is_jump = (class == 0x05 || class == 0x06)
                    && insn.code != JMP_CALL
                    && insn.code != JMP_EXIT;
                if is_jump {
                    let to = i as isize + 1 + insn.off as isize;
                    assert!(
                        to > i as isize && (to as usize) < p.len(),
                        "insn {i}: {insn:?}"
                    );
                }
            }
            assert_eq!(p.last().unwrap().code, JMP_EXIT);
        }
    }

    #[test]
    fn constants_match_the_wire_bytes() {
        // The ethertype 0x0800 arrives as bytes 08 00; a 16-bit load on
        // this host sees `half(0x0800)`.
        assert_eq!(half(0x0800), i32::from(u16::from_ne_bytes([0x08, 0x00])));
        assert_eq!(word(&[10, 0, 0, 1], 0), i32::from_ne_bytes([10, 0, 0, 1]));
    }

    #[test]
    fn wildcard_has_no_address_compare() {
        let specific = assemble(&addrs(&["10.0.0.1:53"]), 3, 4, XDP_PASS);
        let wildcard = assemble(&addrs(&["0.0.0.0:53"]), 3, 4, XDP_PASS);
        assert_eq!(specific.len(), wildcard.len() + 1);
    }

    #[test]
    fn loads_both_maps_by_fd() {
        let p = assemble(&addrs(&["10.0.0.1:53", "[fd00::1]:53"]), 3, 4, XDP_PASS);
        let map_loads: Vec<_> = p
            .iter()
            .filter(|i| i.code == LD_IMM64)
            .map(|i| (i.regs, i.imm))
            .collect();
        // The XSKMAP for the redirect, the counter for the pass path.
        assert_eq!(
            map_loads,
            [(regs(R1, PSEUDO_MAP_FD), 3), (regs(R1, PSEUDO_MAP_FD), 4)]
        );
    }

    #[test]
    fn every_pass_is_counted_before_it_returns() {
        let p = assemble(&addrs(&["10.0.0.1:53"]), 3, 4, XDP_PASS);
        // The only `r0 = XDP_PASS` is the last instruction but the exit, and
        // the counter's lookup call and increment come right before it.
        let passes: Vec<usize> = (0..p.len())
            .filter(|&i| p[i].code == ALU64_MOV_K && p[i].regs == regs(R0, 0))
            .collect();
        assert_eq!(passes, [p.len() - 2]);
        assert_eq!(p[passes[0] - 1].code, STX_MEM_DW);
        assert_eq!(p[passes[0] - 2].code, ALU64_ADD_K);
        assert_eq!(p[passes[0] - 3].code, LDX_MEM_DW);
        let lookup = p
            .iter()
            .position(|i| i.code == JMP_CALL && i.imm == FUNC_MAP_LOOKUP_ELEM)
            .expect("a lookup");
        // A failed lookup skips the increment only.
        assert_eq!(p[lookup + 1].code, JMP_JEQ_K);
        assert_eq!(lookup + 2 + p[lookup + 1].off as usize, passes[0]);
    }
}
