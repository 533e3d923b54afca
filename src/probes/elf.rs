//! Reads the USDT probes of an ELF object from its `.note.stapsdt` section.
//!
//! Each note holds a site's pc, the link-time address of `.stapsdt.base`, the semaphore address
//! and `provider\0name\0args\0`. Notes are grouped into one [`Probe`] per provider:name with one
//! [`Site`] per note, and every address gets the file offset uprobes need.

use super::argspec::{parse_args, ArgLoc, ArgSpec, ArgSpecError};
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{Header, ELFCLASS32, ELFCLASS64, ET_DYN, ET_EXEC, SIZEOF_IDENT};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::{Elf, SectionHeader};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

const NT_STAPSDT: u32 = 3;
const NOTE_SECTION: &str = ".note.stapsdt";
const BASE_SECTION: &str = ".stapsdt.base";

/// One place in the code where a probe fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The pc as written in the note (what readelf prints).
    pub pc: u64,
    /// The note's `.stapsdt.base` address.
    pub base: u64,
    /// The pc after the prelink adjustment: where the instruction really is (link-time vaddr).
    pub addr: u64,
    /// File offset of `addr`: what a uprobe attaches to.
    pub file_offset: u64,
    /// The argument string as written in the note.
    pub args_text: String,
    /// The parsed arguments; malformed text is kept as an error, the site still listed.
    pub args: Result<Vec<ArgSpec>, ArgSpecError>,
}

/// All sites of one provider:name in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub provider: String,
    pub name: String,
    /// Semaphore address as written in the note (readelf's value), if the probe has one.
    pub semaphore: Option<u64>,
    /// File offset of the (prelink-adjusted) semaphore: the uprobe `ref_ctr_offset`.
    pub semaphore_offset: Option<u64>,
    pub sites: Vec<Site>,
}

impl Probe {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }

    /// Largest number of arguments over the sites.
    pub fn arg_count(&self) -> usize {
        self.sites
            .iter()
            .map(|s| s.args_text.split_whitespace().count())
            .max()
            .unwrap_or(0)
    }
}

/// The probes of one ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProbes {
    pub path: PathBuf,
    /// True for ET_DYN (PIE executables and shared libraries).
    pub position_independent: bool,
    pub probes: Vec<Probe>,
}

impl ObjectProbes {
    pub fn site_count(&self) -> usize {
        self.probes.iter().map(|p| p.sites.len()).sum()
    }
}

#[derive(Debug, Error)]
pub enum ElfError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an ELF file")]
    NotElf,
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("malformed ELF: {0}")]
    Malformed(String),
    #[error("corrupt .note.stapsdt note #{index}: {why}")]
    BadNote { index: usize, why: String },
}

/// Read the probes of the ELF object at `path`. Objects without a `.note.stapsdt` section are
/// recognised from their section headers alone, without reading the whole file.
pub fn read_probes(path: &Path) -> Result<ObjectProbes, ElfError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let headers = read_section_headers(&file, len)?;
    let has_notes = headers.sections.iter().any(|(name, sh)| {
        name == NOTE_SECTION && sh.sh_type == goblin::elf::section_header::SHT_NOTE
    });
    if !has_notes {
        return Ok(ObjectProbes {
            path: path.to_path_buf(),
            position_independent: headers.header.e_type == ET_DYN,
            probes: Vec::new(),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    parse_probes(path, &bytes)
}

/// Parse the probes out of a whole ELF image held in memory.
pub fn parse_probes(path: &Path, bytes: &[u8]) -> Result<ObjectProbes, ElfError> {
    check_ident(bytes)?;
    let elf = Elf::parse(bytes).map_err(|e| classify_goblin(e, bytes.len()))?;
    if elf.header.e_type != ET_DYN && elf.header.e_type != ET_EXEC {
        return Err(ElfError::Malformed(format!(
            "ELF type {} is neither an executable nor a shared object",
            elf.header.e_type
        )));
    }
    let section = |name: &str| {
        elf.section_headers
            .iter()
            .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(name))
    };
    let base_addr = section(BASE_SECTION).map(|sh| sh.sh_addr);
    let mut probes: Vec<Probe> = Vec::new();
    if let Some(notes) = section(NOTE_SECTION) {
        let start = notes.sh_offset as usize;
        let end = start
            .checked_add(notes.sh_size as usize)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                ElfError::Truncated(format!(
                    "{NOTE_SECTION} ends at {:#x}, past the end of the file ({:#x})",
                    notes.sh_offset.saturating_add(notes.sh_size),
                    bytes.len()
                ))
            })?;
        let ctx = NoteCtx {
            is_64: elf.is_64,
            little: elf.little_endian,
        };
        for (index, note) in iter_notes(&bytes[start..end], ctx).enumerate() {
            let note = note.map_err(|why| ElfError::BadNote { index, why })?;
            let Some(note) = note else { continue };
            add_site(&elf, base_addr, note, &mut probes)
                .map_err(|why| ElfError::BadNote { index, why })?;
        }
    }
    resolve_symbols(&elf, &mut probes);
    Ok(ObjectProbes {
        path: path.to_path_buf(),
        position_independent: elf.header.e_type == ET_DYN,
        probes,
    })
}

fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes.len() < SIZEOF_IDENT + 2 {
        return Err(ElfError::Truncated("no complete ELF header".into()));
    }
    Ok(())
}

fn classify_goblin(e: goblin::error::Error, len: usize) -> ElfError {
    let text = e.to_string();
    if text.contains("too big")
        || text.contains("offset")
        || text.contains("Scroll")
        || text.contains("end of")
    {
        ElfError::Truncated(format!("{text} (file is {len} bytes)"))
    } else {
        ElfError::Malformed(text)
    }
}

struct SectionHeaders {
    header: Header,
    sections: Vec<(String, SectionHeader)>,
}

/// Read just the ELF header, the section headers and the section-name table.
fn read_section_headers(file: &File, len: u64) -> Result<SectionHeaders, ElfError> {
    let mut ident = [0u8; 64];
    let n = read_at_most(file, &mut ident, 0)?;
    check_ident(&ident[..n])?;
    let container = match ident[4] {
        ELFCLASS64 => Container::Big,
        ELFCLASS32 => Container::Little,
        c => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
    };
    let endian = Endian::from(ident[5] == 1);
    let ctx = Ctx::new(container, endian);
    let hsize = if container == Container::Big { 64 } else { 52 };
    if n < hsize {
        return Err(ElfError::Truncated("no complete ELF header".into()));
    }
    let header = Elf::parse_header(&ident[..n]).map_err(|e| ElfError::Malformed(e.to_string()))?;
    let shnum = header.e_shnum as u64;
    let shentsize = header.e_shentsize as u64;
    if shnum == 0 {
        return Ok(SectionHeaders {
            header,
            sections: Vec::new(),
        });
    }
    let want = SectionHeader::size(ctx) as u64;
    if shentsize != want {
        return Err(ElfError::Malformed(format!(
            "section header entries are {shentsize} bytes, expected {want}"
        )));
    }
    let table_len = shnum * shentsize;
    if header
        .e_shoff
        .checked_add(table_len)
        .is_none_or(|e| e > len)
    {
        return Err(ElfError::Truncated(format!(
            "section headers end past the end of the file ({len} bytes)"
        )));
    }
    let mut table = vec![0u8; table_len as usize];
    file.read_exact_at(&mut table, header.e_shoff)?;
    // parse_from: `parse` treats offset 0 as "no section headers".
    let shdrs = SectionHeader::parse_from(&table, 0, shnum as usize, ctx)
        .map_err(|e| ElfError::Malformed(format!("section headers: {e}")))?;
    let strtab = shdrs
        .get(header.e_shstrndx as usize)
        .ok_or_else(|| ElfError::Malformed("section-name table index out of range".into()))?;
    if strtab
        .sh_offset
        .checked_add(strtab.sh_size)
        .is_none_or(|e| e > len)
    {
        return Err(ElfError::Truncated(
            "section-name table ends past the end of the file".into(),
        ));
    }
    let mut names = vec![0u8; strtab.sh_size as usize];
    file.read_exact_at(&mut names, strtab.sh_offset)?;
    let sections = shdrs
        .into_iter()
        .map(|sh| {
            let name = names
                .get(sh.sh_name..)
                .and_then(|s| s.split(|&b| b == 0).next())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            (name, sh)
        })
        .collect();
    Ok(SectionHeaders { header, sections })
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[derive(Clone, Copy)]
struct NoteCtx {
    is_64: bool,
    little: bool,
}

impl NoteCtx {
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn addr(self, b: &[u8]) -> u64 {
        if self.is_64 {
            let a: [u8; 8] = b[..8].try_into().unwrap();
            if self.little {
                u64::from_le_bytes(a)
            } else {
                u64::from_be_bytes(a)
            }
        } else {
            self.u32(b) as u64
        }
    }
    fn addr_size(self) -> usize {
        if self.is_64 {
            8
        } else {
            4
        }
    }
}

struct RawNote<'a> {
    pc: u64,
    base: u64,
    semaphore: u64,
    provider: &'a str,
    name: &'a str,
    args: &'a str,
}

/// Walk the notes of the section; `Ok(None)` for notes that are not stapsdt probes.
fn iter_notes(
    data: &[u8],
    ctx: NoteCtx,
) -> impl Iterator<Item = Result<Option<RawNote<'_>>, String>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= data.len() {
            return None;
        }
        let result = next_note(data, &mut pos, ctx);
        failed = result.is_err();
        Some(result)
    })
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

fn next_note<'a>(
    data: &'a [u8],
    pos: &mut usize,
    ctx: NoteCtx,
) -> Result<Option<RawNote<'a>>, String> {
    let header = data
        .get(*pos..*pos + 12)
        .ok_or("note header cut short by the end of the section")?;
    let namesz = ctx.u32(&header[0..4]) as usize;
    let descsz = ctx.u32(&header[4..8]) as usize;
    let ntype = ctx.u32(&header[8..12]);
    let name_start = *pos + 12;
    let desc_start = align4(name_start + namesz).ok_or("name size overflows")?;
    let desc_end = desc_start
        .checked_add(descsz)
        .ok_or("desc size overflows")?;
    if desc_end > data.len() {
        return Err(format!(
            "note sizes (name {namesz}, desc {descsz}) run past the end of the section"
        ));
    }
    *pos = align4(desc_end).ok_or("desc size overflows")?;
    let owner = &data[name_start..name_start + namesz];
    if owner != b"stapsdt\0" || ntype != NT_STAPSDT {
        return Ok(None);
    }
    let desc = &data[desc_start..desc_end];
    let a = ctx.addr_size();
    if desc.len() < 3 * a {
        return Err(format!("descriptor of {descsz} bytes is too short"));
    }
    let mut strings = desc[3 * a..].split(|&b| b == 0);
    let mut text = |what: &str| -> Result<&'a str, String> {
        let s = strings
            .next()
            .ok_or_else(|| format!("missing {what} string"))?;
        std::str::from_utf8(s).map_err(|_| format!("{what} is not UTF-8"))
    };
    let provider = text("provider")?;
    let name = text("name")?;
    let args = text("argument")?;
    if !desc.ends_with(&[0]) {
        return Err("strings are not NUL-terminated".into());
    }
    if provider.is_empty() || name.is_empty() {
        return Err("empty provider or probe name".into());
    }
    Ok(Some(RawNote {
        pc: ctx.addr(&desc[0..]),
        base: ctx.addr(&desc[a..]),
        semaphore: ctx.addr(&desc[2 * a..]),
        provider,
        name,
        args,
    }))
}

fn add_site(
    elf: &Elf,
    base_addr: Option<u64>,
    note: RawNote,
    probes: &mut Vec<Probe>,
) -> Result<(), String> {
    // Prelink moved the object if .stapsdt.base is no longer where the note says it was.
    let delta = match base_addr {
        Some(actual) if note.base != 0 => actual.wrapping_sub(note.base),
        _ => 0,
    };
    let addr = note.pc.wrapping_add(delta);
    let file_offset = vaddr_to_offset(elf, addr)
        .ok_or_else(|| format!("pc {addr:#x} is in no loadable segment"))?;
    let semaphore = (note.semaphore != 0).then_some(note.semaphore);
    let semaphore_offset = match semaphore {
        Some(s) => Some(
            vaddr_to_offset(elf, s.wrapping_add(delta))
                .ok_or_else(|| format!("semaphore {s:#x} is in no loadable segment"))?,
        ),
        None => None,
    };
    let args = parse_args(note.args);
    let site = Site {
        pc: note.pc,
        base: note.base,
        addr,
        file_offset,
        args_text: note.args.to_string(),
        args,
    };
    match probes
        .iter_mut()
        .find(|p| p.provider == note.provider && p.name == note.name)
    {
        Some(p) => p.sites.push(site),
        None => probes.push(Probe {
            provider: note.provider.to_string(),
            name: note.name.to_string(),
            semaphore,
            semaphore_offset,
            sites: vec![site],
        }),
    }
    Ok(())
}

/// File offset of a link-time virtual address, through the PT_LOAD segment containing it.
pub fn vaddr_to_offset(elf: &Elf, vaddr: u64) -> Option<u64> {
    elf.program_headers
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .find(|ph| vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr.saturating_add(ph.p_memsz))
        .map(|ph| vaddr - ph.p_vaddr + ph.p_offset)
}

/// Fill in the link-time address of every `sym(%rip)` argument from .symtab, then .dynsym.
/// One pass over each table for all sites: symbol tables hold tens of thousands of entries.
fn resolve_symbols(elf: &Elf, probes: &mut [Probe]) {
    use std::collections::HashMap;
    let mut wanted: HashMap<String, Option<u64>> = HashMap::new();
    for arg in rip_args(probes) {
        if let ArgLoc::RipSym { symbol, .. } = &arg.loc {
            wanted.insert(symbol.clone(), None);
        }
    }
    if wanted.is_empty() {
        return;
    }
    for sym in elf.syms.iter().filter(|s| s.st_value != 0) {
        if let Some(slot @ None) = elf
            .strtab
            .get_at(sym.st_name)
            .and_then(|n| wanted.get_mut(n))
        {
            *slot = Some(sym.st_value);
        }
    }
    for sym in elf.dynsyms.iter().filter(|s| s.st_value != 0) {
        if let Some(slot @ None) = elf
            .dynstrtab
            .get_at(sym.st_name)
            .and_then(|n| wanted.get_mut(n))
        {
            *slot = Some(sym.st_value);
        }
    }
    for arg in rip_args(probes) {
        if let ArgLoc::RipSym { symbol, addr, .. } = &mut arg.loc {
            *addr = wanted.get(symbol.as_str()).copied().flatten();
        }
    }
}

fn rip_args(probes: &mut [Probe]) -> impl Iterator<Item = &mut ArgSpec> {
    probes
        .iter_mut()
        .flat_map(|p| p.sites.iter_mut())
        .filter_map(|s| s.args.as_mut().ok())
        .flatten()
        .filter(|a| matches!(a.loc, ArgLoc::RipSym { .. }))
}
