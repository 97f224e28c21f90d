//! `user` resolution from the root's /etc/passwd and /etc/group (no NSS).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: Option<Vec<u8>>,
}

struct Passwd {
    name: Vec<u8>,
    uid: u32,
    gid: u32,
    home: Vec<u8>,
}

struct Group {
    name: Vec<u8>,
    gid: u32,
    members: Vec<Vec<u8>>,
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn passwd(text: &[u8]) -> Vec<Passwd> {
    text.split(|&c| c == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line.split(|&c| c == b':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(Passwd {
                name: f[0].to_vec(),
                uid: num(f[2])?,
                gid: num(f[3])?,
                home: f[5].to_vec(),
            })
        })
        .collect()
}

fn groups(text: &[u8]) -> Vec<Group> {
    text.split(|&c| c == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line.split(|&c| c == b':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(|&c| c == b',')
                .filter(|m| !m.is_empty())
                .map(|m| m.to_vec())
                .collect();
            Some(Group {
                name: f[0].to_vec(),
                gid: num(f[2])?,
                members,
            })
        })
        .collect()
}

/// A user spec: a uid, or "user", "uid", "user:group", "uid:gid" (text).
pub enum Spec {
    Uid(u32),
    Text(Vec<u8>),
}

/// Resolves against the given file contents; Err names what is unknown.
pub fn resolve(spec: &Spec, passwd_text: &[u8], group_text: &[u8]) -> Result<Ids, String> {
    let users = passwd(passwd_text);
    let (user_part, group_part): (Vec<u8>, Option<Vec<u8>>) = match spec {
        Spec::Uid(u) => (u.to_string().into_bytes(), None),
        Spec::Text(t) => match t.iter().position(|&c| c == b':') {
            Some(i) => (t[..i].to_vec(), Some(t[i + 1..].to_vec())),
            None => (t.clone(), None),
        },
    };
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let entry = match num(&user_part) {
        Some(uid) => users.iter().find(|p| p.uid == uid),
        None => Some(
            users
                .iter()
                .find(|p| p.name == user_part)
                .ok_or_else(|| format!("unknown user {:?}", show(&user_part)))?,
        ),
    };
    let uid = match (num(&user_part), entry) {
        (Some(u), _) => u,
        (None, Some(p)) => p.uid,
        (None, None) => return Err(format!("unknown user {:?}", show(&user_part))),
    };
    let all_groups = groups(group_text);
    let mut gid = entry.map_or(0, |p| p.gid);
    if let Some(g) = &group_part {
        gid = match num(g) {
            Some(n) => n,
            None => all_groups
                .iter()
                .find(|x| x.name == *g)
                .map(|x| x.gid)
                .ok_or_else(|| format!("unknown group {:?}", show(g)))?,
        };
    }
    let mut sup = vec![gid];
    if let Some(p) = entry {
        for g in &all_groups {
            if g.members.contains(&p.name) && !sup.contains(&g.gid) {
                sup.push(g.gid);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups: sup,
        home: entry.map(|p| p.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: &[u8] =
        b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbad line\n";
    const G: &[u8] = b"root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\nstaff:x:50:\n";

    #[test]
    fn names_and_numbers() {
        let a = resolve(&Spec::Text(b"alice".to_vec()), P, G).unwrap();
        assert_eq!(
            (a.uid, a.gid, a.groups.clone(), a.home.as_deref()),
            (1000, 1000, vec![1000, 10], Some(&b"/home/alice"[..]))
        );
        let b = resolve(&Spec::Uid(1000), P, G).unwrap();
        assert_eq!(b.gid, 1000);
        let c = resolve(&Spec::Text(b"4242:staff".to_vec()), P, G).unwrap();
        assert_eq!((c.uid, c.gid, c.home), (4242, 50, None));
        let d = resolve(&Spec::Text(b"root:1".to_vec()), P, G).unwrap();
        assert_eq!((d.uid, d.gid), (0, 1));
        assert!(resolve(&Spec::Text(b"nobody".to_vec()), P, G).is_err());
        assert!(resolve(&Spec::Text(b"alice:nogroup".to_vec()), P, G).is_err());
    }
}
