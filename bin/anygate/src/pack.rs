//! `anygate pack-spa --from DIR --to DIR`: prepares a built SPA for serving.
//!
//! Copies every regular file of `--from` (sorted walk; symlinks and hidden names are
//! skipped and reported), writes `.br`, `.zst` and `.gz` siblings for compressible files
//! where they are smaller (best compression levels), and a manifest
//! (`.anygate-manifest.json`) with each file's content type, size and a strong ETag computed
//! from its content, per encoding too. The static action then does no hashing or
//! compression at run time.
//!
//! Deterministic: the same input gives byte-identical output (contents and manifest; file
//! times are those of the run). Safe: it refuses to write inside `--from`, and it replaces
//! an existing `--to` only if that is a previous pack-spa output (it holds a manifest) or
//! empty.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anygate_actions::static_files::encoding::Encoding;
use anygate_actions::static_files::manifest::{self, Entry};
use anygate_actions::static_files::mime;

/// Files smaller than this are not compressed: the saving cannot pay for the header.
const MIN_COMPRESS: usize = 256;

/// Parses `--from DIR --to DIR` and runs.
pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let (mut from, mut to) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--from" => &mut from,
            "--to" => &mut to,
            _ => return Err(format!("unknown argument `{a}`")),
        };
        let v = it
            .next()
            .ok_or_else(|| format!("`{a}` needs a directory"))?;
        *slot = Some(PathBuf::from(v));
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err("pack-spa needs --from DIR and --to DIR".into());
    };
    Ok(match run(&from, &to) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("anygate: pack-spa: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Packs `from` into `to`; the summary on success.
pub fn run(from: &Path, to: &Path) -> Result<String, String> {
    let src = fs::canonicalize(from).map_err(|e| format!("--from {}: {e}", from.display()))?;
    if !src.is_dir() {
        return Err(format!("--from {} is not a directory", from.display()));
    }
    let dst = absolute_resolved(to)?;
    if dst.starts_with(&src) {
        return Err(format!(
            "--to {} is inside --from {}: choose a directory outside it",
            to.display(),
            from.display()
        ));
    }
    if src.starts_with(&dst) {
        return Err(format!(
            "--from {} is inside --to {}: replacing --to would delete the input",
            from.display(),
            to.display()
        ));
    }
    prepare(&dst, to)?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    walk(&src, Path::new(""), &mut files, &mut skipped)?;
    // A source file named like a sibling pack-spa may generate (`app.js.gz` next to a
    // compressible `app.js`, from a bundler's compression plugin) is copied last, and only
    // if pack-spa did not write that sibling itself.
    let names: std::collections::HashSet<PathBuf> = files.iter().cloned().collect();
    let (candidates, mut files): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|rel| {
            Encoding::ALL.iter().any(|e| {
                let name = rel.as_os_str().as_encoded_bytes();
                name.strip_suffix(e.suffix().as_bytes())
                    .is_some_and(|stem| {
                        let stem = Path::new(std::ffi::OsStr::from_bytes(stem));
                        names.contains(stem)
                            && mime::compressible(mime::content_type(
                                stem.as_os_str().as_encoded_bytes(),
                            ))
                    })
            })
        });
    let mut generated = std::collections::HashSet::new();
    files.extend(candidates);
    let mut entries = BTreeMap::new();
    let (mut bytes, mut siblings, mut saved) = (0u64, 0usize, 0u64);
    for rel in &files {
        if generated.contains(rel) {
            skipped.push(format!(
                "{} (replaced by the sibling pack-spa wrote)",
                rel.display()
            ));
            continue;
        }
        let data = fs::read(src.join(rel)).map_err(|e| format!("{}: {e}", rel.display()))?;
        let out = dst.join(rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&out, &data).map_err(|e| format!("{}: {e}", out.display()))?;
        let name = rel.to_string_lossy().into_owned();
        let content_type = mime::content_type(name.as_bytes());
        let mut encodings: [Option<(u64, String)>; 3] = Default::default();
        if mime::compressible(content_type) && data.len() >= MIN_COMPRESS {
            for e in Encoding::ALL {
                let packed = e.compress(&data, true);
                if packed.is_empty() || packed.len() >= data.len() {
                    continue;
                }
                let mut sib = out.clone().into_os_string();
                sib.push(e.suffix());
                let mut sib_rel = rel.clone().into_os_string();
                sib_rel.push(e.suffix());
                generated.insert(PathBuf::from(sib_rel));
                fs::write(&sib, &packed).map_err(|err| format!("{}: {err}", out.display()))?;
                siblings += 1;
                saved += (data.len() - packed.len()) as u64;
                encodings[e.index()] = Some((packed.len() as u64, manifest::content_etag(&packed)));
            }
        }
        bytes += data.len() as u64;
        entries.insert(
            name,
            Entry {
                content_type: content_type.to_owned(),
                size: data.len() as u64,
                etag: manifest::content_etag(&data),
                encodings,
            },
        );
    }
    // Written last, so that it is not older than any file it describes.
    let path = dst.join(manifest::FILE_NAME);
    fs::write(&path, manifest::render(&entries)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut report = format!(
        "packed {} files ({bytes} bytes) into {}: {siblings} precompressed siblings, {saved} bytes saved per full download set",
        entries.len(),
        to.display()
    );
    for s in skipped {
        report.push_str(&format!("\nskipped {s}"));
    }
    Ok(report)
}

/// `to` made absolute with its existing ancestors resolved (it may not exist yet).
fn absolute_resolved(to: &Path) -> Result<PathBuf, String> {
    let abs = std::path::absolute(to).map_err(|e| format!("--to {}: {e}", to.display()))?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(
            existing
                .file_name()
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
        );
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let mut out = fs::canonicalize(existing).map_err(|e| format!("--to {}: {e}", to.display()))?;
    for part in rest.iter().rev() {
        if part == ".." {
            out.pop();
        } else if !part.is_empty() && part != "." {
            out.push(part);
        }
    }
    Ok(out)
}

/// Makes `dst` an empty directory: created, or emptied if it is a previous output.
fn prepare(dst: &Path, shown: &Path) -> Result<(), String> {
    match fs::read_dir(dst) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dst).map_err(|e| format!("--to {}: {e}", shown.display()))
        }
        Err(e) => Err(format!("--to {}: {e}", shown.display())),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
            if !dst.join(manifest::FILE_NAME).is_file() {
                return Err(format!(
                    "--to {} is not empty and is not a previous pack-spa output; refusing to replace it",
                    shown.display()
                ));
            }
            fs::remove_dir_all(dst)
                .and_then(|()| fs::create_dir_all(dst))
                .map_err(|e| format!("--to {}: {e}", shown.display()))
        }
    }
}

/// Collects regular files under `root/rel`, sorted; symlinks and hidden names go to
/// `skipped`.
fn walk(
    root: &Path,
    rel: &Path,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<String>,
) -> Result<(), String> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    names.sort_by_key(fs::DirEntry::file_name);
    for e in names {
        let name = e.file_name();
        let path = rel.join(&name);
        let Ok(ft) = e.file_type() else { continue };
        if name.as_encoded_bytes().starts_with(b".") {
            skipped.push(format!("{} (hidden)", path.display()));
        } else if ft.is_symlink() {
            skipped.push(format!("{} (symlink)", path.display()));
        } else if ft.is_dir() {
            walk(root, &path, files, skipped)?;
        } else if ft.is_file() {
            files.push(path);
        }
    }
    Ok(())
}
