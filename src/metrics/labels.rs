//! Fixed label tables of the DNS counters: transport, query type and
//! response code, each mapped to a dense index so a query costs one load.

/// Which transport a query arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: responses are limited in size and may be truncated.
    Udp,
    /// TCP: responses up to 65535 bytes.
    Tcp,
}

/// Label value of the zone slot for queries outside every zone (REFUSED,
/// FORMERR before a name was parsed, CHAOS class).
pub const NO_ZONE: &str = "(none)";
/// Slot of [`NO_ZONE`]; always allocated.
pub const NO_ZONE_SLOT: u32 = 0;

/// Query types with their own label value; everything else is `other`.
pub(crate) const QTYPES: [(u16, &str); 11] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (33, "SRV"),
    (257, "CAA"),
    (2, "NS"),
    (12, "PTR"),
    (6, "SOA"),
    (255, "ANY"),
];
pub(super) const N_QTYPE: usize = QTYPES.len() + 1;

/// Response codes with their own label value; everything else is `other`.
pub(crate) const RCODES: [(u16, &str); 7] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];
pub(super) const N_RCODE: usize = RCODES.len() + 1;
pub(super) const N_TRANSPORT: usize = 2;
pub(super) const TRANSPORTS: [&str; N_TRANSPORT] = ["udp", "tcp"];

/// `INDEX[code]` = position of `code` in `table`, or `table.len()` (other):
/// one load per query instead of a search.
const fn index_table<const N: usize>(table: &[(u16, &str)]) -> [u8; N] {
    let mut t = [table.len() as u8; N];
    let mut i = 0;
    while i < table.len() {
        t[table[i].0 as usize] = i as u8;
        i += 1;
    }
    t
}
const QTYPE_INDEX: [u8; 258] = index_table(&QTYPES);
const RCODE_INDEX: [u8; 17] = index_table(&RCODES);

#[inline]
pub(super) fn qtype_index(qtype: u16) -> usize {
    QTYPE_INDEX
        .get(usize::from(qtype))
        .map_or(QTYPES.len(), |&i| usize::from(i))
}

#[inline]
pub(super) fn rcode_index(rcode: u16) -> usize {
    RCODE_INDEX
        .get(usize::from(rcode))
        .map_or(RCODES.len(), |&i| usize::from(i))
}

#[inline]
pub(super) fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_tables_agree_with_the_label_tables() {
        for code in 0..=u16::MAX {
            let q = QTYPES
                .iter()
                .position(|&(t, _)| t == code)
                .unwrap_or(QTYPES.len());
            assert_eq!(qtype_index(code), q, "qtype {code}");
            let r = RCODES
                .iter()
                .position(|&(t, _)| t == code)
                .unwrap_or(RCODES.len());
            assert_eq!(rcode_index(code), r, "rcode {code}");
        }
    }

    #[test]
    fn transports_have_distinct_indexes() {
        let (u, t) = (
            transport_index(Transport::Udp),
            transport_index(Transport::Tcp),
        );
        assert_ne!(u, t);
        assert_eq!(TRANSPORTS[u], "udp");
        assert_eq!(TRANSPORTS[t], "tcp");
    }
}
