//! The answer engine called directly with hostile input: every packet gets a
//! well-formed response or is dropped, never a panic, and UDP responses
//! respect the size limit.

use std::net::SocketAddr;
use std::path::Path;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RecordType;
use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{self, Client, Outcome};
use steerdns::select::Rng;

use crate::harness::*;

#[test]
fn random_and_mutated_packets_never_break_the_engine() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let snap = steerdns::app::load_snapshot(&path, 1).expect("example config");
    let seeds: Vec<Vec<u8>> = vec![
        q_ecs("www.lb.example.com.", RecordType::A, "81.2.69.0/24")
            .to_vec()
            .unwrap(),
        qe("static.lb.example.com.", RecordType::ANY)
            .to_vec()
            .unwrap(),
        q("alias.lb.example.com.", RecordType::A).to_vec().unwrap(),
        q("nope.lb.example.com.", RecordType::AAAA)
            .to_vec()
            .unwrap(),
        q_class(
            "id.server.",
            RecordType::TXT,
            hickory_proto::rr::DNSClass::CH,
        )
        .to_vec()
        .unwrap(),
    ];
    let mut rng = Rng::seeded(0xF00D);
    let mut out = Vec::new();
    let (mut answered, mut dropped) = (0, 0);
    for i in 0..60_000u32 {
        let pkt: Vec<u8> = match i % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                let mut p = seeds[(rng.below(seeds.len() as u64)) as usize].clone();
                for _ in 0..=rng.below(6) {
                    let at = rng.below(p.len() as u64) as usize;
                    p[at] = rng.next_u64() as u8;
                }
                if rng.below(4) == 0 {
                    p.truncate(rng.below(p.len() as u64) as usize);
                }
                p
            }
        };
        let transport = if i % 5 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let client = Client {
            addr: SocketAddr::from(([127, 0, 0, 1], 5353)),
            transport,
        };
        match answer::answer(&snap, &pkt, client, &mut rng, &mut out) {
            Outcome::Dropped => dropped += 1,
            Outcome::Answered { .. } => {
                answered += 1;
                assert!(out.len() >= 12, "short response to {pkt:02x?}");
                assert_eq!(&out[..2], &pkt[..2], "id echoed");
                assert!(out[2] & 0x80 != 0, "QR set");
                if transport == Transport::Udp {
                    assert!(out.len() <= 1232, "UDP response of {} bytes", out.len());
                }
                let m = Message::from_vec(&out).unwrap_or_else(|e| {
                    panic!("undecodable response ({e}) to {pkt:02x?}: {out:02x?}")
                });
                assert_eq!(m.metadata.message_type, MessageType::Response);
            }
        }
    }
    assert!(
        answered > 10_000 && dropped > 1000,
        "answered {answered}, dropped {dropped}"
    );
}
