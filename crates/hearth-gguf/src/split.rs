//! Split GGUF files: one model in parts named `NAME-00001-of-00003.gguf`, as llama.cpp's
//! `gguf-split` writes them and the hub publishes large models.
//!
//! Every part is a GGUF file of its own with the keys `split.no` (u16, from 0),
//! `split.count` (u16) and `split.tensors.count` (i32, the tensors of all parts); the first
//! part also holds all the model's metadata, and each part a contiguous run of the tensors.
//! llama.cpp loads a split model when given the first part, as long as the others lie beside
//! it under the standard names ([`SplitName::part_file_name`]).
//!
//! [`split_gguf`] writes a whole file as such parts (for tests and tools, as `gguf-split`
//! does); [`SplitName`] reads and makes the names; [`split_info`] reads a part's keys.

use crate::{GgufBuilder, GgufError, GgufFile, MetadataValue, RawTensor};

/// A part's number, from 0 (u16).
pub const SPLIT_NO_KEY: &str = "split.no";
/// How many parts the model has (u16).
pub const SPLIT_COUNT_KEY: &str = "split.count";
/// How many tensors all the parts hold together (i32).
pub const SPLIT_TENSORS_COUNT_KEY: &str = "split.tensors.count";

/// The standard name of one part: `PREFIX-00001-of-00003.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// What comes before `-00001-of-00003.gguf`.
    pub prefix: String,
    /// The part's number, from 1.
    pub index: u32,
    /// How many parts there are.
    pub count: u32,
}

impl SplitName {
    /// Reads `PREFIX-NNNNN-of-MMMMM.gguf` (five digits each, `.gguf` in any case, index from 1
    /// to a count of at least 2); `None` for any other name.
    pub fn parse(file_name: &str) -> Option<SplitName> {
        let lower = file_name.to_ascii_lowercase();
        let stem_length = lower.strip_suffix(".gguf")?.len();
        let stem = &file_name[..stem_length];
        // "-00001-of-00003" is 15 characters.
        let tail_start = stem.len().checked_sub(15)?;
        let (prefix, tail) = (stem.get(..tail_start)?, stem.get(tail_start..)?);
        let digits = |text: &str| {
            (text.len() == 5 && text.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| text.parse::<u32>().ok())
                .flatten()
        };
        let rest = tail.strip_prefix('-')?;
        let (index, count) = rest.split_once("-of-")?;
        let (index, count) = (digits(index)?, digits(count)?);
        if prefix.is_empty() || index == 0 || index > count || count < 2 {
            return None;
        }
        Some(SplitName {
            prefix: prefix.to_string(),
            index,
            count,
        })
    }

    /// The file name of part `index` (from 1), as llama.cpp looks for it.
    pub fn part_file_name(&self, index: u32) -> String {
        format!("{}-{index:05}-of-{:05}.gguf", self.prefix, self.count)
    }

    /// Every part's file name, the first first.
    pub fn part_file_names(&self) -> Vec<String> {
        (1..=self.count)
            .map(|index| self.part_file_name(index))
            .collect()
    }
}

/// What a part's header says of its place in a split model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitInfo {
    /// `split.no`: the part's number, from 0.
    pub number: u64,
    /// `split.count`.
    pub count: u64,
    /// `split.tensors.count`, when present.
    pub tensors: Option<u64>,
}

/// The split keys of `file`: `None` when it is not a part of a split model (no `split.count`,
/// or a count of 1), an error when they are there but not whole numbers.
pub fn split_info(file: &GgufFile) -> Result<Option<SplitInfo>, GgufError> {
    let Some(count) = file.get_u64(SPLIT_COUNT_KEY)? else {
        return Ok(None);
    };
    if count <= 1 {
        return Ok(None);
    }
    Ok(Some(SplitInfo {
        number: file.get_u64(SPLIT_NO_KEY)?.unwrap_or(0),
        count,
        tensors: file.get_u64(SPLIT_TENSORS_COUNT_KEY)?,
    }))
}

/// Why a file could not be split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("cannot split {tensors} tensors into {parts} parts (each part needs a tensor)")]
    TooManyParts { tensors: usize, parts: u16 },
}

/// Writes the GGUF file `source` (whole, in memory) as `parts` files, each holding a run of its
/// tensors in order: the first with all the metadata, every one with the split keys. The
/// result, written beside each other under [`SplitName::part_file_names`], is what
/// `gguf-split --split-max-tensors` would write.
pub fn split_gguf(source: &[u8], parts: u16) -> Result<Vec<Vec<u8>>, SplitError> {
    let file = GgufFile::parse(source)?;
    let tensors = file.tensors();
    if parts < 2 || usize::from(parts) > tensors.len() {
        return Err(SplitError::TooManyParts {
            tensors: tensors.len(),
            parts,
        });
    }
    let tensor_count = i32::try_from(tensors.len()).unwrap_or(i32::MAX);
    let mut files = Vec::with_capacity(usize::from(parts));
    for number in 0..usize::from(parts) {
        // Even runs: each part gets at least one tensor, since there are at least `parts`.
        let start = number * tensors.len() / usize::from(parts);
        let end = (number + 1) * tensors.len() / usize::from(parts);
        let run = &tensors[start..end];
        let mut builder = GgufBuilder::new().version(file.version());
        if file.alignment() != crate::limits::DEFAULT_ALIGNMENT {
            builder = builder.alignment(u32::try_from(file.alignment()).unwrap_or(u32::MAX));
        }
        if number == 0 {
            for entry in file.metadata() {
                let is_split_key = entry.key.starts_with("split.");
                if !is_split_key && entry.key != crate::parser::ALIGNMENT_KEY {
                    builder = builder.metadata(&entry.key, entry.value.clone());
                }
            }
        }
        builder = builder
            .metadata(
                SPLIT_NO_KEY,
                MetadataValue::U16(u16::try_from(number).unwrap_or(u16::MAX)),
            )
            .metadata(SPLIT_COUNT_KEY, MetadataValue::U16(parts))
            .metadata(SPLIT_TENSORS_COUNT_KEY, MetadataValue::I32(tensor_count));
        for tensor in run {
            let data = file
                .tensor_data(source, tensor)
                .unwrap_or_default()
                .to_vec();
            builder = builder.raw_tensor(RawTensor {
                name: tensor.name.clone(),
                n_dims: u32::try_from(tensor.dimensions.len()).unwrap_or(u32::MAX),
                dimensions: tensor.dimensions.clone(),
                type_id: tensor.ggml_type.id(),
                offset: None,
                data,
            });
        }
        files.push(builder.build());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgmlType;

    #[test]
    fn split_names_are_read_and_made_as_llama_cpp_does() {
        let name = SplitName::parse("Qwen3-235B-Q4_K_M-00001-of-00003.gguf").unwrap();
        assert_eq!(name.prefix, "Qwen3-235B-Q4_K_M");
        assert_eq!((name.index, name.count), (1, 3));
        assert_eq!(
            name.part_file_names(),
            [
                "Qwen3-235B-Q4_K_M-00001-of-00003.gguf",
                "Qwen3-235B-Q4_K_M-00002-of-00003.gguf",
                "Qwen3-235B-Q4_K_M-00003-of-00003.gguf"
            ]
        );
        assert_eq!(SplitName::parse("m-00002-of-00002.GGUF").unwrap().index, 2);
        for not_split in [
            "model.gguf",
            "m-00001-of-00001.gguf",
            "m-00000-of-00002.gguf",
            "m-00003-of-00002.gguf",
            "-00001-of-00002.gguf",
            "m-0001-of-00002.gguf",
            "m-00001-of-00002.bin",
            "m-000a1-of-00002.gguf",
            "ü-00001-of-0002ü.gguf",
        ] {
            assert_eq!(SplitName::parse(not_split), None, "{not_split}");
        }
    }

    #[test]
    fn a_file_splits_into_parts_that_hold_its_tensors_and_metadata() {
        let source = GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String("llama".into()),
            )
            .tensor("a", GgmlType::F32, &[8, 2])
            .tensor("b", GgmlType::F32, &[4])
            .tensor("c", GgmlType::F16, &[16])
            .build();
        let original = GgufFile::parse(&source).unwrap();
        let parts = split_gguf(&source, 2).unwrap();
        let files: Vec<GgufFile> = parts
            .iter()
            .map(|bytes| GgufFile::parse(bytes).unwrap())
            .collect();
        assert_eq!(files[0].architecture().unwrap(), "llama");
        assert!(files[1].get("general.architecture").is_none());
        let mut names = Vec::new();
        for (number, (file, bytes)) in files.iter().zip(&parts).enumerate() {
            let info = split_info(file).unwrap().unwrap();
            assert_eq!(info.number, number as u64);
            assert_eq!((info.count, info.tensors), (2, Some(3)));
            for tensor in file.tensors() {
                let before = original.tensor(&tensor.name).unwrap();
                assert_eq!(
                    file.tensor_data(bytes, tensor),
                    original.tensor_data(&source, before)
                );
                names.push(tensor.name.clone());
            }
        }
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(split_info(&original).unwrap(), None);
        assert!(matches!(
            split_gguf(&source, 4),
            Err(SplitError::TooManyParts { .. })
        ));
    }
}
