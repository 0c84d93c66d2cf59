//! `hosts` entries (and the authority's `trusted_proxies`): the filter reads
//! CIDR notation itself (`protocol::HostEntry`, 7 KB less Wasm than `ipnet`).
//! This is its differential test against `ipnet`, the reading it replaced:
//! every entry admits exactly the clients `ipnet` admits, except where
//! `ipnet`'s own copy of an old `std` address parser is laxer than today's
//! `std`, which Tollgate uses: an IPv4 octet with a leading zero
//! (`010.0.0.0/8`, decimal to `ipnet`, octal to `inet_aton`) and an IPv6
//! `::` that stands for no group at all (`1:2:3:4:5:6:7::8`). Both are
//! refused (match nothing). Prefix lengths are read as `ipnet` reads them.

#![cfg(not(target_arch = "wasm32"))]

use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;
use std::net::IpAddr;
use tollgate::protocol::{host_matches, HostEntry};

/// The reading before: an address by `std`, else a network by `ipnet`.
fn reference(entry: &str, client: IpAddr) -> bool {
    let client = tollgate::protocol::canonical(client);
    if entry == "*" {
        return true;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return tollgate::protocol::canonical(ip) == client;
    }
    match entry.parse::<IpNet>() {
        Ok(IpNet::V6(net)) => match net.network().to_ipv4_mapped() {
            Some(v4) if net.prefix_len() >= 96 => {
                Ipv4Net::new(v4, net.prefix_len() - 96).is_ok_and(|n| matches!(client, IpAddr::V4(c) if n.contains(&c)))
            }
            _ => matches!(client, IpAddr::V6(c) if net.contains(&c)),
        },
        Ok(net) => net.contains(&client),
        Err(_) => false,
    }
}

/// An address part `std` refuses and `ipnet` reads: an IPv4 octet with a
/// leading zero, or a `::` standing for no group.
fn stricter_address(entry: &str) -> bool {
    let addr = entry.split('/').next().unwrap_or_default();
    let octal = !addr.contains(':') && addr.split('.').any(|o| o.len() > 1 && o.starts_with('0'));
    let empty_elision = addr.contains("::") && addr.split(':').filter(|g| !g.is_empty()).count() >= 8;
    octal || empty_elision
}

#[test]
fn entries_table() {
    // (entry, client, admitted?)
    let cases = [
        ("*", "10.0.0.1", true),
        ("*", "::1", true),
        ("10.0.0.1", "10.0.0.1", true),
        ("10.0.0.1", "::ffff:10.0.0.1", true),
        ("::ffff:10.0.0.1", "10.0.0.1", true),
        ("10.0.0.0/8", "10.9.9.9", true),
        ("10.0.0.0/8", "::ffff:10.9.9.9", true),
        ("10.1.2.3/8", "10.200.0.1", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("10.0.0.0/08", "10.0.0.1", true),
        ("10.0.0.0/0", "200.1.1.1", true),
        ("10.0.0.1/32", "10.0.0.1", true),
        ("10.0.0.1/32", "10.0.0.2", false),
        ("10.0.0.0/33", "10.0.0.1", false),
        ("10.0.0.0/", "10.0.0.1", false),
        ("10.0.0.0/+8", "10.0.0.1", false),
        ("10.0.0.0/8 ", "10.0.0.1", false),
        ("10.0.0.0/8/8", "10.0.0.1", false),
        ("010.0.0.0/8", "10.0.0.1", false),
        ("10.0.0.0/000", "200.1.1.1", false),
        ("10.0.0.0/008", "10.0.0.1", false),
        ("10.0.0.1/032", "10.0.0.1", false),
        ("10.0.0.0/00", "200.1.1.1", true),
        ("2001:db8::/032", "2001:db8::1", true),
        ("2001:db8::/0032", "2001:db8::1", false),
        ("1:2:3:4:5:6:7::8/128", "1:2:3:4:5:6:7:8", false),
        ("fe80::1%eth0", "fe80::1", false),
        ("::ffff:10.0.0.0/104", "10.9.9.9", true),
        ("::ffff:10.0.0.0/104", "11.0.0.1", false),
        ("::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true),
        ("::ffff:0:0/80", "10.0.0.1", false),
        ("2001:db8::/32", "2001:db8::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("2001:db8::/32", "10.0.0.1", false),
        ("::/0", "2001:db8::1", true),
        ("::/0", "10.0.0.1", false),
        ("::1/128", "::1", true),
        ("::1/129", "::1", false),
        ("::1/0128", "::1", false),
        ("localhost", "127.0.0.1", false),
        ("", "127.0.0.1", false),
    ];
    for (entry, client, want) in cases {
        let client: IpAddr = client.parse().unwrap();
        assert_eq!(host_matches(entry, client), want, "{entry} vs {client}");
        if !stricter_address(entry) {
            assert_eq!(reference(entry, client), want, "the reference agrees on {entry} vs {client}");
        }
    }
}

fn octet() -> impl Strategy<Value = String> {
    // Mostly valid octets: an address is valid only when all four are.
    prop_oneof![
        40 => (0u16..=255).prop_map(|o| o.to_string()),
        1 => Just("256".to_string()),
        1 => Just("010".to_string()),
        1 => Just("00".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let v4 = (octet(), octet(), octet(), octet()).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}"));
    let v6 = prop_oneof![
        any::<u128>().prop_map(|x| std::net::Ipv6Addr::from(x).to_string()),
        any::<u32>().prop_map(|x| std::net::Ipv4Addr::from(x).to_ipv6_mapped().to_string()),
        Just("::".to_string()),
        Just("2001:db8::".to_string()),
    ];
    let len = prop_oneof![
        (0u8..=130).prop_map(|n| n.to_string()),
        (0u8..=40).prop_map(|n| format!("0{n}")),
        (0u8..=40).prop_map(|n| format!("00{n}")),
        Just(String::new()),
    ];
    let addr = prop_oneof![v4, v6];
    prop_oneof![
        addr.clone(),
        (addr, proptest::option::of(len)).prop_map(|(a, l)| match l {
            Some(l) => format!("{a}/{l}"),
            None => a,
        }),
        Just("*".to_string()),
        "[0-9a-f:./*]{0,12}",
    ]
}

fn client() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|x| IpAddr::V4(x.into())),
        (0u32..=0x00ff_ffff).prop_map(|x| IpAddr::V4((0x0a00_0000 | x).into())),
        any::<u128>().prop_map(|x| IpAddr::V6(x.into())),
        any::<u32>().prop_map(|x| IpAddr::V6(std::net::Ipv4Addr::from(x).to_ipv6_mapped())),
        (0u128..=u128::from(u64::MAX)).prop_map(|x| IpAddr::V6((0x2001_0db8_u128 << 96 | x).into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Same answer as `ipnet` for every entry and client, but for the
    /// addresses `std` refuses (they match nothing).
    #[test]
    fn admits_what_ipnet_admits(entry in entry(), client in client()) {
        let ours = host_matches(&entry, client);
        if stricter_address(&entry) {
            prop_assert!(!ours || entry == "*" , "{entry} admitted {client}");
        } else {
            prop_assert_eq!(ours, reference(&entry, client), "{} vs {}", entry, client);
        }
    }

    /// A network admits its own address, and a network containing a client
    /// contains it at every shorter prefix.
    #[test]
    fn a_network_admits_its_address_at_every_shorter_prefix(bits in any::<u32>(), len in 0u8..=32) {
        let addr = std::net::Ipv4Addr::from(bits);
        let client = IpAddr::V4(addr);
        for shorter in 0..=len {
            prop_assert!(HostEntry::Net(client, shorter).admits(client));
        }
        prop_assert_eq!(HostEntry::parse(&format!("{addr}/{len}")), Some(HostEntry::Net(client, len)));
    }

    /// Every entry `ipnet` refuses as a network, Tollgate refuses too, and
    /// with a prefix of a zero-padded form it is the same network.
    #[test]
    fn a_prefix_is_read_as_ipnet_reads_it(entry in entry()) {
        let is_net = matches!(HostEntry::parse(&entry), Some(HostEntry::Net(..)));
        if is_net {
            prop_assert!(entry.parse::<IpNet>().is_ok(), "{} is a network to Tollgate only", entry);
        } else if entry.contains('/') && !stricter_address(&entry) {
            prop_assert!(entry.parse::<IpNet>().is_err(), "{} is a network to ipnet only", entry);
        }
    }
}

/// A network built by hand with a prefix longer than its family's (the
/// parser never makes one) admits nothing rather than everything.
#[test]
fn an_out_of_range_prefix_admits_nothing() {
    for (net, client) in [("10.0.0.0", "10.0.0.1"), ("2001:db8::", "2001:db8::1"), ("::ffff:10.0.0.0", "10.0.0.1")] {
        let net: IpAddr = net.parse().unwrap();
        for len in [33, 129, 200, 255] {
            if net.is_ipv4() && len > 32 || net.is_ipv6() && len > 128 {
                assert!(!HostEntry::Net(net, len).admits(client.parse().unwrap()), "{net}/{len}");
            }
        }
    }
}
