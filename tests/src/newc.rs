//! A small reader for "newc" (`070701`) cpio archives, independent of the writer in
//! `hoist_images::cpio`, so tests (and the cpio fuzz target, which includes this file) can
//! check what the writer wrote: names, modes, owners, link counts, device numbers, data.

/// One archive member, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Vec<u8>,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

const HEADER_LEN: usize = 110;

/// Every member before the trailer; an error says what is wrong and at which offset.
pub fn read(archive: &[u8]) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    let mut at = 0usize;
    loop {
        let head = archive.get(at..at + HEADER_LEN).ok_or(format!("offset {at}: truncated header"))?;
        if &head[..6] != b"070701" {
            return Err(format!("offset {at}: bad magic"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let text =
                std::str::from_utf8(&head[6 + 8 * i..14 + 8 * i]).map_err(|_| format!("offset {at}: field {i}"))?;
            u32::from_str_radix(text, 16).map_err(|_| format!("offset {at}: field {i} {text:?}"))
        };
        let (filesize, namesize) = (field(6)? as usize, field(11)? as usize);
        let name_end = at + HEADER_LEN + namesize;
        let name = archive.get(at + HEADER_LEN..name_end).ok_or(format!("offset {at}: truncated name"))?;
        let Some((0, name)) = name.split_last().map(|(last, rest)| (*last, rest)) else {
            return Err(format!("offset {at}: name not NUL-terminated"));
        };
        let data_at = name_end.next_multiple_of(4);
        let data = archive.get(data_at..data_at + filesize).ok_or(format!("offset {at}: truncated data"))?;
        if name == b"TRAILER!!!" {
            return Ok(records);
        }
        records.push(Record {
            name: name.to_vec(),
            ino: field(0)?,
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            rdev: (field(9)?, field(10)?),
            data: data.to_vec(),
        });
        at = (data_at + filesize).next_multiple_of(4);
    }
}
