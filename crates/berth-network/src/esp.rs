//! IPsec ESP for encrypted overlay networks (`--opt encrypted`): the VXLAN datagrams between
//! this node and the other nodes of its encrypted networks, in xfrm transport mode, with the
//! keys the swarm managers hand out and rotate.
//!
//! Per remote node (data-path address) and key there is an outbound and an inbound security
//! association (AEAD `rfc4106(gcm(aes))`: the key's 16 bytes and 4-byte salt, 64-bit ICV;
//! SPI = [`spi`] of source, key tag and destination, so both ends compute the same), all with
//! reqid [`MARK`]. Per remote node one outbound policy takes UDP to port 4789 marked [`MARK`]
//! through the primary key's association; a catch-all policy of lower priority blocks marked
//! traffic to any node without one, so nothing of an encrypted network leaves in clear.
//! Table `ip berth-esp` marks outgoing VXLAN of the encrypted VNIs (a route chain: the mark
//! makes the kernel look the route and policy up again) and drops inbound VXLAN of those VNIs
//! that did not come through ESP (`meta secpath missing`).
//!
//! Everything is synced from the full desired state (add what is missing, then switch
//! policies, then delete what is not wanted: a rotation never leaves a gap), so a rotation or
//! a node leaving removes its associations, and the last encrypted network's tear-down removes
//! all of it. It is programmed with the `ip xfrm` and `nft` commands, as the probe
//! ([`crate::lb::check_encryption_support`]) and the nftables table are: that needs no new
//! netlink family crate, and the commands run only when the managers' description of the
//! node's networks changes. Commands that carry keys go to `ip -batch -` through its standard
//! input, never on a command line (which every local user can read in `/proc`). Nothing here runs unless that probe passed when the network was brought up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use crate::{Error, Result};

/// The packet mark of outgoing VXLAN of encrypted networks, which their xfrm policies match;
/// also the reqid of berth's associations.
pub const MARK: u32 = 0x00D0_C4E3;

/// What ESP puts before the datagram it carries: SPI, sequence number and the 8-byte IV.
pub const ESP_HEADER: u32 = 16;

/// What ESP puts after the datagram: the trailer (pad length, next header), after padding
/// the datagram and trailer to a multiple of 4 bytes, then the 8-byte ICV.
pub const ESP_TRAILER: u32 = 2;
pub const ESP_ICV: u32 = 8;

/// The VXLAN UDP port the policies select.
const VXLAN_PORT: u16 = 4789;

/// The priority of the catch-all block policy (policies with a lower number win).
const BLOCK_PRIORITY: u32 = 4096;

/// One network encryption key as the managers hand it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Its tag: unique in the cluster, never 0.
    pub tag: u32,
    pub key: [u8; 16],
    pub salt: [u8; 4],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ tag: {}, .. }}", self.tag)
    }
}

/// The cluster's keys and which one outgoing traffic uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub keys: Vec<Key>,
    pub primary: u32,
}

impl Keys {
    /// Checks the keys: at least one, tags unique and not 0, the primary among them.
    pub fn check(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        for k in &self.keys {
            if k.tag == 0 || !seen.insert(k.tag) {
                return Err(Error::Invalid(format!(
                    "network encryption key tag {} is 0 or given twice",
                    k.tag
                )));
            }
        }
        if !seen.contains(&self.primary) {
            return Err(Error::Invalid(format!(
                "the primary network encryption key {} is not among the keys given",
                self.primary
            )));
        }
        Ok(())
    }
}

/// The SPI of the association from `src` to `dst` under the key tagged `tag`: 32-bit FNV-1a
/// of the source address, the tag (big endian) and the destination address; a hash below
/// 256 (SPIs IANA reserves) gets bit 8 set.
pub fn spi(src: Ipv4Addr, tag: u32, dst: Ipv4Addr) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in src
        .octets()
        .iter()
        .chain(tag.to_be_bytes().iter())
        .chain(dst.octets().iter())
    {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    if h < 0x100 {
        h | 0x100
    } else {
        h
    }
}

/// A security association: source, destination, SPI and AEAD key material (key + salt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Sa {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    spi: u32,
    aead: [u8; 20],
}

impl Sa {
    fn id(&self) -> (Ipv4Addr, Ipv4Addr, u32) {
        (self.src, self.dst, self.spi)
    }
}

/// An outbound policy: traffic from `local` to `remote` through the association `spi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Sp {
    local: Ipv4Addr,
    remote: Ipv4Addr,
    spi: u32,
}

/// The associations and policies for node pairs (local, remote) and `keys`.
fn desired(pairs: &BTreeSet<(Ipv4Addr, Ipv4Addr)>, keys: &Keys) -> (BTreeSet<Sa>, BTreeSet<Sp>) {
    let mut sas = BTreeSet::new();
    let mut sps = BTreeSet::new();
    for &(local, remote) in pairs {
        for k in &keys.keys {
            let mut aead = [0u8; 20];
            aead[..16].copy_from_slice(&k.key);
            aead[16..].copy_from_slice(&k.salt);
            sas.insert(Sa {
                src: local,
                dst: remote,
                spi: spi(local, k.tag, remote),
                aead,
            });
            sas.insert(Sa {
                src: remote,
                dst: local,
                spi: spi(remote, k.tag, local),
                aead,
            });
        }
        sps.insert(Sp {
            local,
            remote,
            spi: spi(local, keys.primary, remote),
        });
    }
    (sas, sps)
}

/// What a sync does, in order: remove associations whose key material changed (their SPI is
/// added again), add the missing ones, set the policies, delete unwanted policies, remove
/// unwanted associations.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    replace: Vec<Sa>,
    add: Vec<Sa>,
    policies: Vec<Sp>,
    drop_policies: Vec<Sp>,
    remove: Vec<Sa>,
}

impl Plan {
    /// The plan as `ip -batch` lines, in order (they carry keys: standard input only).
    fn batch(&self) -> String {
        let mut lines: Vec<Vec<String>> = Vec::new();
        lines.extend(self.replace.iter().map(sa_del_args));
        lines.extend(self.add.iter().map(sa_add_args));
        lines.extend(self.policies.iter().map(sp_update_args));
        lines.extend(self.drop_policies.iter().map(sp_del_args));
        lines.extend(self.remove.iter().map(sa_del_args));
        lines.iter().fold(String::new(), |mut s, l| {
            s.push_str(&l.join(" "));
            s.push('\n');
            s
        })
    }
}

fn plan(
    want_sas: &BTreeSet<Sa>,
    want_sps: &BTreeSet<Sp>,
    have_sas: &[Sa],
    have_sps: &[Sp],
) -> Plan {
    let add: Vec<Sa> = want_sas
        .iter()
        .filter(|s| !have_sas.contains(s))
        .copied()
        .collect();
    let (replace, remove): (Vec<Sa>, Vec<Sa>) = have_sas
        .iter()
        .filter(|s| !want_sas.contains(s))
        .partition(|s| add.iter().any(|a| a.id() == s.id()));
    let policies = want_sps
        .iter()
        .filter(|p| !have_sps.contains(p))
        .copied()
        .collect();
    let drop_policies = have_sps
        .iter()
        .filter(|h| {
            !want_sps
                .iter()
                .any(|w| (w.local, w.remote) == (h.local, h.remote))
        })
        .copied()
        .collect();
    Plan {
        replace,
        add,
        policies,
        drop_policies,
        remove,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::from("0x"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sa_id_args(sa: &Sa) -> Vec<String> {
    vec![
        "src".to_string(),
        sa.src.to_string(),
        "dst".into(),
        sa.dst.to_string(),
        "proto".into(),
        "esp".into(),
        "spi".into(),
        format!("{:#010x}", sa.spi),
    ]
}

/// `ip xfrm state add …` for `sa`.
fn sa_add_args(sa: &Sa) -> Vec<String> {
    let mut a: Vec<String> = ["xfrm", "state", "add"].map(String::from).to_vec();
    a.extend(sa_id_args(sa));
    a.extend([
        "reqid".to_string(),
        format!("{MARK:#x}"),
        "mode".into(),
        "transport".into(),
        "aead".into(),
        "rfc4106(gcm(aes))".into(),
        hex(&sa.aead),
        "64".into(),
    ]);
    a
}

/// `ip xfrm state delete …` for `sa`.
fn sa_del_args(sa: &Sa) -> Vec<String> {
    let mut a: Vec<String> = ["xfrm", "state", "delete"].map(String::from).to_vec();
    a.extend(sa_id_args(sa));
    a
}

/// The selector of berth's outbound policies from `src` to `dst` (prefixes included).
fn sp_selector(src: &str, dst: &str) -> Vec<String> {
    [
        "src",
        src,
        "dst",
        dst,
        "proto",
        "udp",
        "dport",
        &VXLAN_PORT.to_string(),
        "dir",
        "out",
        "mark",
        &format!("{MARK:#x}"),
        "mask",
        "0xffffffff",
    ]
    .map(String::from)
    .to_vec()
}

/// `ip xfrm policy update …` for `sp` (made or changed).
fn sp_update_args(sp: &Sp) -> Vec<String> {
    let mut a: Vec<String> = ["xfrm", "policy", "update"].map(String::from).to_vec();
    a.extend(sp_selector(
        &format!("{}/32", sp.local),
        &format!("{}/32", sp.remote),
    ));
    a.extend([
        "tmpl".to_string(),
        "src".into(),
        sp.local.to_string(),
        "dst".into(),
        sp.remote.to_string(),
        "proto".into(),
        "esp".into(),
        "spi".into(),
        format!("{:#010x}", sp.spi),
        "reqid".into(),
        format!("{MARK:#x}"),
        "mode".into(),
        "transport".into(),
    ]);
    a
}

/// `ip xfrm policy delete …` for `sp`.
fn sp_del_args(sp: &Sp) -> Vec<String> {
    let mut a: Vec<String> = ["xfrm", "policy", "delete"].map(String::from).to_vec();
    a.extend(sp_selector(
        &format!("{}/32", sp.local),
        &format!("{}/32", sp.remote),
    ));
    a
}

/// `ip xfrm policy update|delete …` of the catch-all block policy.
fn block_args(verb: &str) -> Vec<String> {
    let mut a: Vec<String> = ["xfrm", "policy", verb].map(String::from).to_vec();
    a.extend(sp_selector("0.0.0.0/0", "0.0.0.0/0"));
    if verb == "update" {
        a.extend([
            "priority".to_string(),
            BLOCK_PRIORITY.to_string(),
            "action".into(),
            "block".into(),
        ]);
    }
    a
}

/// `ip xfrm` prints one entry per unindented line with its details indented below it.
fn entries(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let words = line.split_whitespace();
        if line.starts_with(|c: char| !c.is_whitespace()) || out.is_empty() {
            out.push(words.collect());
        } else if let Some(last) = out.last_mut() {
            last.extend(words);
        }
    }
    out
}

/// The word after the first `key` in `words`.
fn after<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == key)
        .and_then(|i| words.get(i + 1).copied())
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_addr(s: &str) -> Option<Ipv4Addr> {
    s.strip_suffix("/32").unwrap_or(s).parse().ok()
}

/// berth's associations in `ip xfrm state list` output (reqid [`MARK`], ESP, rfc4106 with a
/// 20-byte key); others are not berth's and are left alone.
fn parse_states(text: &str) -> Vec<Sa> {
    entries(text)
        .iter()
        .filter_map(|w| {
            if after(w, "proto")? != "esp" || parse_u32(after(w, "reqid")?)? != MARK {
                return None;
            }
            if after(w, "aead")? != "rfc4106(gcm(aes))" {
                return None;
            }
            let key = w
                .iter()
                .position(|x| *x == "aead")
                .and_then(|i| w.get(i + 2))?
                .strip_prefix("0x")?;
            let mut aead = [0u8; 20];
            if key.len() != 40 {
                return None;
            }
            for (i, b) in aead.iter_mut().enumerate() {
                *b = u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(Sa {
                src: parse_addr(after(w, "src")?)?,
                dst: parse_addr(after(w, "dst")?)?,
                spi: parse_u32(after(w, "spi")?)?,
                aead,
            })
        })
        .collect()
}

/// berth's per-node policies in `ip xfrm policy list` output (outbound, mark [`MARK`], a
/// /32 pair and an ESP template); the block policy and others' are skipped.
fn parse_policies(text: &str) -> Vec<Sp> {
    let mark = format!("{MARK:#x}/0xffffffff");
    entries(text)
        .iter()
        .filter_map(|w| {
            if after(w, "dir")? != "out" || after(w, "mark")? != mark {
                return None;
            }
            let (src, dst) = (after(w, "src")?, after(w, "dst")?);
            if !src.ends_with("/32") || !dst.ends_with("/32") {
                return None;
            }
            Some(Sp {
                local: parse_addr(src)?,
                remote: parse_addr(dst)?,
                spi: parse_u32(after(w, "spi")?)?,
            })
        })
        .collect()
}

/// Table `ip berth-esp` for the encrypted VNIs (rewritten whole in one transaction), or its
/// removal when there are none.
fn render_table(vnis: &BTreeSet<u32>) -> String {
    let mut s = String::from("table ip berth-esp\ndelete table ip berth-esp\n");
    if vnis.is_empty() {
        return s;
    }
    let _ = write!(
        s,
        "table ip berth-esp {{
  set vnis {{ typeof @th,96,24; }}
  chain output {{
    type route hook output priority mangle; policy accept;
    udp dport {VXLAN_PORT} @th,96,24 @vnis meta mark set {MARK:#x}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    udp dport {VXLAN_PORT} @th,96,24 @vnis meta secpath missing drop
  }}
}}
"
    );
    let list: Vec<String> = vnis.iter().map(u32::to_string).collect();
    let _ = writeln!(s, "add element ip berth-esp vnis {{ {} }}", list.join(", "));
    s
}

/// Runs `ip` with `args`; its output, or an error with what it said.
fn ip(args: &[String]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Internal(format!("running ip xfrm: {e}")))?;
    if !out.status.success() {
        return Err(Error::Netlink(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with `script` on its standard input (stops at the first failing line);
/// an error says what `ip` said, never the script.
fn ip_batch(script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Internal(format!("running ip xfrm: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error::Netlink(format!(
            "ip xfrm: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// An encrypted network as the node knows it.
#[derive(Debug, Clone)]
struct EspNet {
    vni: u32,
    local: Ipv4Addr,
    /// The other nodes with endpoints on it.
    remotes: BTreeSet<Ipv4Addr>,
}

#[derive(Debug, Default)]
struct State {
    /// By local network id.
    nets: BTreeMap<String, EspNet>,
    keys: Option<Keys>,
}

impl State {
    fn vnis(&self) -> BTreeSet<u32> {
        self.nets.values().map(|n| n.vni).collect()
    }

    /// Every (local, remote) node pair of every encrypted network.
    fn pairs(&self) -> BTreeSet<(Ipv4Addr, Ipv4Addr)> {
        self.nets
            .values()
            .flat_map(|n| n.remotes.iter().map(move |r| (n.local, *r)))
            .collect()
    }
}

/// The node's encrypted networks (SAs are per pair of nodes, shared by all of them).
#[derive(Debug, Default)]
pub struct Esp {
    state: Mutex<State>,
}

impl Esp {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings encrypted network `id` (VNI `vni`, this node's data-path address `local`) up:
    /// fails with the probe's message when the kernel cannot do ESP with AES-GCM; else its
    /// VNI's outgoing VXLAN is marked (blocked until its nodes and keys are set) and its
    /// cleartext inbound VXLAN dropped. Nodes set earlier are kept (a restart).
    pub fn bring_up(&self, id: &str, vni: u32, local: Ipv4Addr) -> Result<()> {
        crate::lb::check_encryption_support()?;
        let mut st = self.lock();
        let remotes = st
            .nets
            .get(id)
            .map(|n| n.remotes.clone())
            .unwrap_or_default();
        st.nets.insert(
            id.to_string(),
            EspNet {
                vni,
                local,
                remotes,
            },
        );
        ip(&block_args("update"))?;
        crate::nft::run(&render_table(&st.vnis()))
    }

    /// The other nodes of encrypted network `id` and the cluster's keys: the full desired
    /// list; the associations and policies of every encrypted network are synced.
    pub fn set_nodes(&self, id: &str, remotes: BTreeSet<Ipv4Addr>, keys: Keys) -> Result<()> {
        keys.check()?;
        let mut st = self.lock();
        let Some(net) = st.nets.get_mut(id) else {
            return Err(Error::Internal(format!(
                "encrypted network {id} is not up on this node"
            )));
        };
        net.remotes = remotes;
        st.keys = Some(keys);
        sync(&st)
    }

    /// Tears encrypted network `id` down: its VNI and its nodes' associations go (the
    /// associations of nodes that other encrypted networks still reach stay); with the last
    /// one, everything berth programmed for ESP.
    pub fn tear_down(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        if st.nets.remove(id).is_none() {
            return Ok(());
        }
        crate::nft::run(&render_table(&st.vnis()))?;
        sync(&st)?;
        if st.nets.is_empty() {
            st.keys = None;
            ip(&block_args("delete"))?;
        }
        Ok(())
    }
}

/// Brings the kernel's associations and policies to what `st` wants.
fn sync(st: &State) -> Result<()> {
    let (want_sas, want_sps) = match &st.keys {
        Some(keys) => desired(&st.pairs(), keys),
        None => Default::default(),
    };
    let list = |what: &str| ip(&["xfrm", what, "list"].map(String::from));
    let have_sas = parse_states(&list("state")?);
    let have_sps = parse_policies(&list("policy")?);
    let script = plan(&want_sas, &want_sps, &have_sas, &have_sps).batch();
    if script.is_empty() {
        return Ok(());
    }
    ip_batch(&script)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

    fn key(tag: u32) -> Key {
        Key {
            tag,
            key: [tag as u8; 16],
            salt: [0xa0 | tag as u8; 4],
        }
    }

    fn keys(tags: &[u32], primary: u32) -> Keys {
        Keys {
            keys: tags.iter().map(|t| key(*t)).collect(),
            primary,
        }
    }

    #[test]
    fn spi_is_fnv1a_of_source_tag_and_destination() {
        // FNV-1a 32 of the 12 bytes c0 00 02 01 | 00 00 00 01 | c0 00 02 02, by hand.
        let mut h: u32 = 0x811c9dc5;
        for b in [192u8, 0, 2, 1, 0, 0, 0, 1, 192, 0, 2, 2] {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        assert_eq!(spi(A, 1, B), h);
        // Each direction and each key has its own, and both ends compute the same.
        assert_ne!(spi(A, 1, B), spi(B, 1, A));
        assert_ne!(spi(A, 1, B), spi(A, 2, B));
        assert_eq!(spi(A, 7, B), spi(A, 7, B));
        for t in 0..2000 {
            assert!(spi(A, t, B) >= 0x100);
        }
    }

    #[test]
    fn keys_are_checked() {
        assert!(keys(&[1, 2], 2).check().is_ok());
        assert!(keys(&[1, 2], 3).check().is_err());
        assert!(keys(&[1, 1], 1).check().is_err());
        assert!(keys(&[0], 0).check().is_err());
        assert!(keys(&[], 0).check().is_err());
        // The key material never shows in logs.
        assert_eq!(format!("{:?}", key(3)), "Key { tag: 3, .. }");
    }

    #[test]
    fn a_pair_gets_two_associations_per_key_and_a_policy_on_the_primary() {
        let pairs = BTreeSet::from([(A, B)]);
        let (sas, sps) = desired(&pairs, &keys(&[1, 2], 2));
        assert_eq!(sas.len(), 4);
        for t in [1, 2] {
            assert!(sas
                .iter()
                .any(|s| (s.src, s.dst, s.spi) == (A, B, spi(A, t, B))));
            assert!(sas
                .iter()
                .any(|s| (s.src, s.dst, s.spi) == (B, A, spi(B, t, A))));
        }
        let s = sas.iter().find(|s| s.spi == spi(A, 2, B)).unwrap();
        assert_eq!(&s.aead[..16], &[2u8; 16]);
        assert_eq!(&s.aead[16..], &[0xa2u8; 4]);
        assert_eq!(
            sps.into_iter().collect::<Vec<_>>(),
            [Sp {
                local: A,
                remote: B,
                spi: spi(A, 2, B)
            }]
        );
    }

    #[test]
    fn renders_states_and_policies_for_ip_xfrm() {
        let (sas, sps) = desired(&BTreeSet::from([(A, B)]), &keys(&[1], 1));
        let out = sas.iter().find(|s| s.src == A).unwrap();
        let spi_hex = format!("{:#010x}", spi(A, 1, B));
        assert_eq!(
            sa_add_args(out).join(" "),
            format!("xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi {spi_hex} reqid 0xd0c4e3 mode transport aead rfc4106(gcm(aes)) 0x01010101010101010101010101010101a1a1a1a1 64")
        );
        assert_eq!(
            sa_del_args(out).join(" "),
            format!("xfrm state delete src 192.0.2.1 dst 192.0.2.2 proto esp spi {spi_hex}")
        );
        let sp = sps.iter().next().unwrap();
        assert_eq!(
            sp_update_args(sp).join(" "),
            format!("xfrm policy update src 192.0.2.1/32 dst 192.0.2.2/32 proto udp dport 4789 dir out mark 0xd0c4e3 mask 0xffffffff tmpl src 192.0.2.1 dst 192.0.2.2 proto esp spi {spi_hex} reqid 0xd0c4e3 mode transport")
        );
        assert_eq!(
            sp_del_args(sp).join(" "),
            "xfrm policy delete src 192.0.2.1/32 dst 192.0.2.2/32 proto udp dport 4789 dir out mark 0xd0c4e3 mask 0xffffffff"
        );
        assert_eq!(
            block_args("update").join(" "),
            "xfrm policy update src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 4789 dir out mark 0xd0c4e3 mask 0xffffffff priority 4096 action block"
        );
    }

    #[test]
    fn keys_go_to_ip_batch_in_plan_order() {
        let ab = BTreeSet::from([(A, B)]);
        let (sas, sps) = desired(&ab, &keys(&[1], 1));
        let have_sas: Vec<Sa> = sas.iter().copied().collect();
        let have_sps: Vec<Sp> = sps.iter().copied().collect();
        assert_eq!(plan(&sas, &sps, &have_sas, &have_sps).batch(), "");
        // A rotation to key 2 with key 1 dropped, and a stale association of key 2.
        let (sas2, sps2) = desired(&ab, &keys(&[2], 2));
        let mut have = have_sas.clone();
        let mut stale = *sas2.iter().next().unwrap();
        stale.aead = [9; 20];
        have.push(stale);
        let p = plan(&sas2, &sps2, &have, &have_sps);
        let script = p.batch();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 6, "{script}");
        let spi_hex = |s: &Sa| format!("spi {:#010x}", s.spi);
        assert_eq!(
            lines[0],
            format!(
                "xfrm state delete src {} dst {} proto esp {}",
                stale.src,
                stale.dst,
                spi_hex(&stale)
            )
        );
        assert!(lines[1].starts_with("xfrm state add ") && lines[2].starts_with("xfrm state add "));
        // The new key material is in the script (standard input), the stale one is not.
        assert!(script.contains("0x02020202020202020202020202020202a2a2a2a2 64\n"));
        assert!(!script.contains("0x0909"));
        assert!(lines[3].starts_with("xfrm policy update src 192.0.2.1/32 dst 192.0.2.2/32 "));
        assert!(lines[3].ends_with(&format!(
            "{} reqid 0xd0c4e3 mode transport",
            spi_hex(&Sa {
                src: A,
                dst: B,
                spi: spi(A, 2, B),
                aead: [0; 20]
            })
        )));
        assert!(lines[4..]
            .iter()
            .all(|l| l.starts_with("xfrm state delete ")));
        assert!(script.ends_with('\n'));
    }

    /// Runs `f` in a thread inside a new network namespace of its own (gone with the thread).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .expect("netns thread")
    }

    #[test]
    fn ip_batch_takes_its_script_on_stdin_and_never_repeats_it() {
        let (sas, sps) = desired(&BTreeSet::from([(A, B)]), &keys(&[7], 7));
        let p = Plan {
            policies: sps.into_iter().collect(),
            add: sas.into_iter().collect(),
            ..Plan::default()
        };
        let script = p.batch();
        let (res, states, policies) = in_new_netns(move || {
            let res = ip_batch(&script);
            let list =
                |what: &str| ip(&["xfrm", what, "list"].map(String::from)).expect("ip xfrm list");
            (res, list("state"), list("policy"))
        });
        match res {
            // A kernel with ESP and GCM: everything is there.
            Ok(()) => {
                assert_eq!(parse_states(&states).len(), 2, "{states}");
                assert_eq!(parse_policies(&policies).len(), 1, "{policies}");
            }
            // Without (this machine): ip's own message, never the key material.
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("ip xfrm: "), "{msg}");
                assert!(!msg.contains("0707070707"), "{msg}");
                assert!(!msg.contains("rfc4106"), "{msg}");
                assert!(parse_states(&states).is_empty(), "{states}");
            }
        }
    }

    #[test]
    fn renders_the_vni_table() {
        let t = render_table(&BTreeSet::from([4098, 4097]));
        assert!(t.starts_with("table ip berth-esp\ndelete table ip berth-esp\n"));
        assert!(t.contains("udp dport 4789 @th,96,24 @vnis meta mark set 0xd0c4e3"));
        assert!(t.contains("udp dport 4789 @th,96,24 @vnis meta secpath missing drop"));
        assert!(t.contains("type route hook output"));
        assert!(t.ends_with("add element ip berth-esp vnis { 4097, 4098 }\n"));
        assert_eq!(
            render_table(&BTreeSet::new()),
            "table ip berth-esp\ndelete table ip berth-esp\n"
        );
    }

    #[test]
    fn parses_what_ip_xfrm_lists() {
        let states = format!(
            "src 192.0.2.1 dst 192.0.2.2
\tproto esp spi {:#010x} reqid 13681891 mode transport
\treplay-window 0 
\taead rfc4106(gcm(aes)) 0x01010101010101010101010101010101a1a1a1a1 64
\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000
\tsel src 0.0.0.0/0 dst 0.0.0.0/0 
src 192.0.2.9 dst 192.0.2.1
\tproto esp spi 0x00000555 reqid 1 mode tunnel
\taead rfc4106(gcm(aes)) 0x01010101010101010101010101010101a1a1a1a1 64
",
            spi(A, 1, B)
        );
        let have = parse_states(&states);
        let (want, _) = desired(&BTreeSet::from([(A, B)]), &keys(&[1], 1));
        assert_eq!(have.len(), 1, "only berth's (reqid 0xd0c4e3)");
        assert!(want.contains(&have[0]));
        let policies = "src 192.0.2.1/32 dst 192.0.2.2/32 proto udp dport 4789 
\tdir out priority 0 ptype main 
\tmark 0xd0c4e3/0xffffffff 
\ttmpl src 192.0.2.1 dst 192.0.2.2
\t\tproto esp spi 0x12345678 reqid 13681891 mode transport
src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 4789 
\tdir out action block priority 4096 ptype main 
\tmark 0xd0c4e3/0xffffffff 
src 10.0.0.0/8 dst 10.1.0.0/16 
\tdir out priority 0 ptype main 
\ttmpl src 1.1.1.1 dst 2.2.2.2
\t\tproto esp spi 0x1 reqid 0 mode tunnel
";
        assert_eq!(
            parse_policies(policies),
            [Sp {
                local: A,
                remote: B,
                spi: 0x12345678
            }]
        );
        assert!(parse_states("").is_empty() && parse_policies("").is_empty());
    }

    #[test]
    fn sync_adds_then_switches_then_prunes() {
        let ab = BTreeSet::from([(A, B)]);
        let (old_sas, old_sps) = desired(&ab, &keys(&[1], 1));
        let have_sas: Vec<Sa> = old_sas.iter().copied().collect();
        let have_sps: Vec<Sp> = old_sps.iter().copied().collect();
        // Nothing to do when the kernel has it all.
        assert_eq!(
            plan(&old_sas, &old_sps, &have_sas, &have_sps),
            Plan::default()
        );
        // A rotation to key 2 (1 kept): 2's pair added, the policy switched, nothing removed.
        let (sas, sps) = desired(&ab, &keys(&[1, 2], 2));
        let p = plan(&sas, &sps, &have_sas, &have_sps);
        assert_eq!(p.add.len(), 2);
        assert!(p
            .add
            .iter()
            .all(|s| s.spi == spi(A, 2, B) || s.spi == spi(B, 2, A)));
        assert_eq!(p.policies.len(), 1);
        assert_eq!(p.policies[0].spi, spi(A, 2, B));
        assert!(p.drop_policies.is_empty() && p.remove.is_empty() && p.replace.is_empty());
        // Key 1 pruned and node C joined: C's pair added, 1's removed.
        let have_sas: Vec<Sa> = sas.iter().copied().collect();
        let have_sps: Vec<Sp> = sps.iter().copied().collect();
        let (sas, sps) = desired(&BTreeSet::from([(A, B), (A, C)]), &keys(&[2], 2));
        let p = plan(&sas, &sps, &have_sas, &have_sps);
        assert_eq!(p.add.len(), 2);
        assert!(p.add.iter().all(|s| s.src == C || s.dst == C));
        assert_eq!(p.remove.len(), 2);
        assert!(p
            .remove
            .iter()
            .all(|s| s.spi == spi(A, 1, B) || s.spi == spi(B, 1, A)));
        assert_eq!(p.policies.len(), 1);
        assert_eq!(p.policies[0].remote, C);
        // B leaves: its associations and policy go.
        let have_sas: Vec<Sa> = sas.iter().copied().collect();
        let have_sps: Vec<Sp> = sps.iter().copied().collect();
        let (sas, sps) = desired(&BTreeSet::from([(A, C)]), &keys(&[2], 2));
        let p = plan(&sas, &sps, &have_sas, &have_sps);
        assert!(p.add.is_empty() && p.policies.is_empty());
        assert_eq!(p.drop_policies.len(), 1);
        assert_eq!(p.drop_policies[0].remote, B);
        assert!(p.remove.iter().all(|s| s.src == B || s.dst == B) && p.remove.len() == 2);
        // Same SPI, other key material (a new swarm reusing a tag): deleted before re-adding.
        let mut stale = have_sas.clone();
        stale[0].aead = [9; 20];
        let p = plan(
            &have_sas.iter().copied().collect(),
            &have_sps.iter().copied().collect(),
            &stale,
            &have_sps,
        );
        assert_eq!(p.replace, [stale[0]]);
        assert_eq!(p.add, [have_sas[0]]);
        assert!(p.remove.is_empty());
        // Nothing wanted: everything goes.
        let p = plan(&BTreeSet::new(), &BTreeSet::new(), &have_sas, &have_sps);
        assert_eq!(p.remove.len(), have_sas.len());
        assert_eq!(p.drop_policies.len(), have_sps.len());
    }

    #[test]
    fn pairs_are_the_union_over_networks() {
        let mut st = State::default();
        st.nets.insert(
            "n1".into(),
            EspNet {
                vni: 4097,
                local: A,
                remotes: BTreeSet::from([B]),
            },
        );
        st.nets.insert(
            "n2".into(),
            EspNet {
                vni: 4098,
                local: A,
                remotes: BTreeSet::from([B, C]),
            },
        );
        assert_eq!(st.pairs(), BTreeSet::from([(A, B), (A, C)]));
        assert_eq!(st.vnis(), BTreeSet::from([4097, 4098]));
    }
}
