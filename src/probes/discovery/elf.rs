//! Reads the USDT probes of an ELF object from its `.note.stapsdt` section.
//!
//! Each note holds a site's pc, the link-time address of `.stapsdt.base`, the semaphore address
//! and `provider\0name\0args\0`. Notes are grouped into one [`Probe`] per provider:name with one
//! [`Site`] per note, and every address gets the file offset uprobes need.

use super::argspec::{parse_args, ArgLoc, ArgSpec, ArgSpecError};
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{Header, ELFCLASS32, ELFCLASS64, ET_DYN, ET_EXEC, SIZEOF_IDENT};
use goblin::elf::program_header::{ProgramHeader, PF_W, PF_X, PT_LOAD};
use goblin::elf::section_header::{SHT_DYNSYM, SHT_NOTE, SHT_SYMTAB};
use goblin::elf::{Elf, SectionHeader};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
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
    /// Notes that point where no probe can be (see [`NoteWarning`]), each once. A probe with
    /// any is listed with them and refused by [`Probe::attachable`].
    pub warnings: Vec<NoteWarning>,
}

/// A note whose addresses are inside the object but in the wrong kind of segment: a breakpoint
/// written into data, or a semaphore counter incremented in read-only memory, would corrupt the
/// traced program or fail in the kernel, so such a probe is never attached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteWarning {
    #[error("pc {pc:#x} is not in an executable segment")]
    PcNotExecutable { pc: u64 },
    #[error("semaphore {semaphore:#x} is not in a writable segment")]
    SemaphoreNotWritable { semaphore: u64 },
}

/// Why a probe is refused for attaching.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{probe} is not attached: {why} (its note is corrupt)")]
pub struct BadProbe {
    pub probe: String,
    pub why: NoteWarning,
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

    /// Whether the probe may be attached: not when a note points outside the segments a
    /// probe site (executable) or a semaphore (writable) must be in.
    pub fn attachable(&self) -> Result<(), BadProbe> {
        match self.warnings.first() {
            Some(why) => Err(BadProbe {
                probe: self.full_name(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Site {
    /// Number of arguments in the note (also when their text cannot be parsed).
    pub fn arg_count(&self) -> usize {
        match &self.args {
            Ok(args) => args.len(),
            Err(_) => self.args_text.split_whitespace().count(),
        }
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
    /// A FIFO, device, socket or directory: never opened for reading (a FIFO would block).
    #[error("not a regular file: it is {0}")]
    NotRegular(&'static str),
}

/// What kind of non-regular file `meta` describes, or None for a regular file.
fn irregular_kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Opens `path` for reading only if it is a regular file. It is checked before opening (opening
/// a device can have effects) and again on the open descriptor, which is opened non-blocking so
/// that a FIFO swapped in between cannot hang us.
fn open_regular(path: &Path) -> Result<(File, u64), ElfError> {
    if let Some(kind) = irregular_kind(&std::fs::metadata(path)?) {
        return Err(ElfError::NotRegular(kind));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = irregular_kind(&meta) {
        return Err(ElfError::NotRegular(kind));
    }
    Ok((file, meta.len()))
}

/// Read the probes of the ELF object at `path`. Only the headers, the note section and (for
/// `sym(%rip)` arguments) the symbol tables are read: objects with probes can be hundreds of
/// megabytes (libLLVM, librustc_driver carry libstdc++'s probes), and objects without a
/// `.note.stapsdt` section cost a few small reads.
pub fn read_probes(path: &Path) -> Result<ObjectProbes, ElfError> {
    let (file, len) = open_regular(path)?;
    probes_from(path, &FileSource { file, len })
}

/// Parse the probes out of a whole ELF image held in memory.
pub fn parse_probes(path: &Path, bytes: &[u8]) -> Result<ObjectProbes, ElfError> {
    probes_from(path, &bytes)
}

/// Where the bytes of an ELF image come from: a file read piecemeal, or memory.
trait Source {
    fn len(&self) -> u64;
    fn read_exact(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, ElfError>;

    /// `len` bytes at `offset`, or a `Truncated` error naming `what` ran past the end.
    fn read(&self, offset: u64, len: u64, what: &str) -> Result<Cow<'_, [u8]>, ElfError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(ElfError::Truncated(format!(
                "{what} ends past the end of the file ({} bytes)",
                self.len()
            )));
        }
        self.read_exact(offset, len)
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, ElfError> {
        Ok(Cow::Borrowed(
            &self[offset as usize..(offset + len) as usize],
        ))
    }
}

struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, ElfError> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            // The file shrank since we measured it.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ElfError::Truncated(format!(
                    "file ended early while reading {len} bytes at {offset:#x}"
                ))
            } else {
                ElfError::Io(e)
            }
        })?;
        Ok(Cow::Owned(buf))
    }
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

fn probes_from(path: &Path, src: &impl Source) -> Result<ObjectProbes, ElfError> {
    let ident = src.read_exact(0, src.len().min(64))?;
    check_ident(&ident)?;
    let container = match ident[4] {
        ELFCLASS64 => Container::Big,
        ELFCLASS32 => Container::Little,
        c => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
    };
    let little = match ident[5] {
        1 => true,
        2 => false,
        d => {
            return Err(ElfError::Malformed(format!(
                "unknown ELF data encoding {d}"
            )))
        }
    };
    let ctx = Ctx::new(container, Endian::from(little));
    let hsize = if container == Container::Big { 64 } else { 52 };
    if ident.len() < hsize {
        return Err(ElfError::Truncated("no complete ELF header".into()));
    }
    let header = Elf::parse_header(&ident).map_err(|e| ElfError::Malformed(e.to_string()))?;
    if header.e_type != ET_DYN && header.e_type != ET_EXEC {
        return Err(ElfError::Malformed(format!(
            "ELF type {} is neither an executable nor a shared object",
            header.e_type
        )));
    }
    let position_independent = header.e_type == ET_DYN;
    let sections = read_sections(src, &header, ctx)?;
    let section = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, sh)| sh);
    let mut probes: Vec<Probe> = Vec::new();
    let notes = section(NOTE_SECTION).filter(|sh| sh.sh_type == SHT_NOTE);
    if let Some(notes) = notes {
        let loads = read_loads(src, &header, ctx)?;
        let base_addr = section(BASE_SECTION).map(|sh| sh.sh_addr);
        let data = src.read(notes.sh_offset, notes.sh_size, NOTE_SECTION)?;
        let note_ctx = NoteCtx {
            is_64: container == Container::Big,
            little,
        };
        for (index, note) in iter_notes(&data, note_ctx).enumerate() {
            let note = note.map_err(|why| ElfError::BadNote { index, why })?;
            let Some(note) = note else { continue };
            add_site(&loads, base_addr, note, &mut probes)
                .map_err(|why| ElfError::BadNote { index, why })?;
        }
        resolve_symbols(src, &sections, note_ctx, &mut probes)?;
    }
    Ok(ObjectProbes {
        path: path.to_path_buf(),
        position_independent,
        probes,
    })
}

/// The section headers with their names (empty when the object has none).
fn read_sections(
    src: &impl Source,
    header: &Header,
    ctx: Ctx,
) -> Result<Vec<(String, SectionHeader)>, ElfError> {
    let shnum = header.e_shnum as u64;
    if shnum == 0 || header.e_shoff == 0 {
        return Ok(Vec::new());
    }
    let want = SectionHeader::size(ctx) as u64;
    if header.e_shentsize as u64 != want {
        return Err(ElfError::Malformed(format!(
            "section header entries are {} bytes, expected {want}",
            header.e_shentsize
        )));
    }
    let table = src.read(header.e_shoff, shnum * want, "section header table")?;
    // parse_from: `parse` treats offset 0 as "no section headers".
    let shdrs = SectionHeader::parse_from(&table, 0, shnum as usize, ctx)
        .map_err(|e| ElfError::Malformed(format!("section headers: {e}")))?;
    let strtab = shdrs
        .get(header.e_shstrndx as usize)
        .ok_or_else(|| ElfError::Malformed("section-name table index out of range".into()))?;
    let names = src.read(strtab.sh_offset, strtab.sh_size, "section-name table")?;
    Ok(shdrs
        .into_iter()
        .map(|sh| (c_string(&names, sh.sh_name).unwrap_or_default(), sh))
        .collect())
}

/// The PT_LOAD program headers: they map addresses to file offsets.
fn read_loads(
    src: &impl Source,
    header: &Header,
    ctx: Ctx,
) -> Result<Vec<ProgramHeader>, ElfError> {
    let phnum = header.e_phnum as u64;
    if phnum == 0 {
        return Ok(Vec::new());
    }
    let want = ProgramHeader::size(ctx) as u64;
    if header.e_phentsize as u64 != want {
        return Err(ElfError::Malformed(format!(
            "program header entries are {} bytes, expected {want}",
            header.e_phentsize
        )));
    }
    let table = src.read(header.e_phoff, phnum * want, "program header table")?;
    let headers = ProgramHeader::parse(&table, 0, phnum as usize, ctx)
        .map_err(|e| ElfError::Malformed(format!("program headers: {e}")))?;
    Ok(headers
        .into_iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .collect())
}

/// The NUL-terminated string at `offset` of a string table.
fn c_string(table: &[u8], offset: usize) -> Option<String> {
    let bytes = table.get(offset..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
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
    loads: &[ProgramHeader],
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
    let pc_load = load_segment(loads, addr)
        .ok_or_else(|| format!("pc {addr:#x} is in no loadable segment"))?;
    let file_offset = segment_offset(pc_load, addr);
    let mut warnings = Vec::new();
    if pc_load.p_flags & PF_X == 0 {
        warnings.push(NoteWarning::PcNotExecutable { pc: note.pc });
    }
    let semaphore = (note.semaphore != 0).then_some(note.semaphore);
    let semaphore_offset = match semaphore {
        Some(s) => {
            let at = s.wrapping_add(delta);
            let load = load_segment(loads, at)
                .ok_or_else(|| format!("semaphore {s:#x} is in no loadable segment"))?;
            if load.p_flags & PF_W == 0 {
                warnings.push(NoteWarning::SemaphoreNotWritable { semaphore: s });
            }
            Some(segment_offset(load, at))
        }
        None => None,
    };
    let site = Site {
        pc: note.pc,
        base: note.base,
        addr,
        file_offset,
        args_text: note.args.to_string(),
        args: parse_args(note.args),
    };
    match probes
        .iter_mut()
        .find(|p| p.provider == note.provider && p.name == note.name)
    {
        Some(p) => {
            p.sites.push(site);
            for w in warnings {
                if !p.warnings.contains(&w) {
                    p.warnings.push(w);
                }
            }
        }
        None => probes.push(Probe {
            provider: note.provider.to_string(),
            name: note.name.to_string(),
            semaphore,
            semaphore_offset,
            sites: vec![site],
            warnings,
        }),
    }
    Ok(())
}

fn load_segment(loads: &[ProgramHeader], vaddr: u64) -> Option<&ProgramHeader> {
    loads
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .find(|ph| vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr.saturating_add(ph.p_memsz))
}

fn segment_offset(ph: &ProgramHeader, vaddr: u64) -> u64 {
    (vaddr - ph.p_vaddr).wrapping_add(ph.p_offset)
}

/// Fill in the link-time address of every `sym(%rip)` argument from .symtab, then .dynsym.
/// The tables are read only when such an argument exists, and walked once for all sites.
fn resolve_symbols(
    src: &impl Source,
    sections: &[(String, SectionHeader)],
    ctx: NoteCtx,
    probes: &mut [Probe],
) -> Result<(), ElfError> {
    let mut wanted: HashMap<String, Option<u64>> = HashMap::new();
    for arg in rip_args(probes) {
        if let ArgLoc::RipSym { symbol, .. } = &arg.loc {
            wanted.insert(symbol.clone(), None);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    for kind in [SHT_SYMTAB, SHT_DYNSYM] {
        let Some((name, table)) = sections.iter().find(|(_, sh)| sh.sh_type == kind) else {
            continue;
        };
        let Some((_, strings)) = sections.get(table.sh_link as usize) else {
            continue;
        };
        let syms = src.read(table.sh_offset, table.sh_size, name)?;
        let strs = src.read(strings.sh_offset, strings.sh_size, "symbol string table")?;
        let entry = if ctx.is_64 { 24 } else { 16 };
        for sym in syms.chunks_exact(entry) {
            let value = if ctx.is_64 {
                ctx.addr(&sym[8..])
            } else {
                ctx.u32(&sym[4..]) as u64
            };
            if value == 0 {
                continue;
            }
            let name_at = ctx.u32(&sym[0..]) as usize;
            let Some(bytes) = strs.get(name_at..) else {
                continue;
            };
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let Ok(sym_name) = std::str::from_utf8(&bytes[..end]) else {
                continue;
            };
            if let Some(slot @ None) = wanted.get_mut(sym_name) {
                *slot = Some(value);
            }
        }
    }
    for arg in rip_args(probes) {
        if let ArgLoc::RipSym { symbol, addr, .. } = &mut arg.loc {
            *addr = wanted.get(symbol.as_str()).copied().flatten();
        }
    }
    Ok(())
}

fn rip_args(probes: &mut [Probe]) -> impl Iterator<Item = &mut ArgSpec> {
    probes
        .iter_mut()
        .flat_map(|p| p.sites.iter_mut())
        .filter_map(|s| s.args.as_mut().ok())
        .flatten()
        .filter(|a| matches!(a.loc, ArgLoc::RipSym { .. }))
}
