//! The GGUF header reader on the two real test models and on broken files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "gguf_builder.rs"]
mod gguf_builder;

use conclave_core::gguf::{read_header, GgufError, GgufValue};
use conclave_core::ErrorCode;
use gguf_builder::{real_model, s, Builder, Tensor, GEMMA, SMOL, V};
use std::time::{Duration, Instant};

fn err_of(b: &Builder) -> GgufError {
    let dir = tempfile::tempdir().unwrap();
    let p = b.write(dir.path(), "x.gguf");
    let e = read_header(&p).expect_err("broken file must be refused");
    assert!(
        e.to_string().contains(&*p.to_string_lossy()),
        "error names the file: {e}"
    );
    e
}

#[test]
fn smollm2_header_matches_llama_cpp() {
    let Some(p) = real_model(SMOL) else { return };
    let t = Instant::now();
    let h = read_header(&p).unwrap();
    let took = t.elapsed();
    assert_eq!(h.version, 3);
    assert_eq!(h.architecture(), Some("llama"));
    assert_eq!(h.block_count(), Some(30));
    assert_eq!(h.context_length(), Some(8192));
    assert_eq!(h.embedding_length(), Some(576));
    assert_eq!(h.head_count(), Some(9));
    assert_eq!(h.head_count_kv(), Some(3));
    assert_eq!(h.key_length(), None);
    assert_eq!(h.file_type_id(), Some(3));
    assert_eq!(h.file_type().as_deref(), Some("Q4_1"));
    // llama.cpp prints "model params = 134.52 M".
    assert_eq!(h.parameter_count(), 134_515_008);
    assert_eq!(h.tensor_count, 272);
    assert_eq!(h.tensors.len(), 272);
    assert_eq!(h.vocab_size(), Some(49152));
    assert_eq!(h.bos_token_id(), Some(1));
    assert_eq!(h.eos_token_id(), Some(2));
    assert_eq!(h.license(), Some("apache-2.0"));
    assert_eq!(h.name(), Some("Smollm2 135M 8k Lc100K Mix1 Ep2"));
    assert!(h.chat_template().unwrap().contains("<|im_start|>"));
    assert_eq!(h.alignment, 32);
    assert_eq!(h.file_size, 98_362_432);
    // Tensors are packed to the end of the file: the data region is exactly accounted for.
    let end = h
        .tensors
        .iter()
        .map(|t| h.data_offset + t.offset + t.n_bytes.unwrap())
        .max()
        .unwrap();
    assert_eq!(end, h.file_size);
    assert!(!h.is_split());
    // The token list is summarised, not stored.
    assert!(matches!(
        h.get("tokenizer.ggml.tokens"),
        Some(GgufValue::ArraySummary { len: 49152, .. })
    ));
    assert!(took < Duration::from_secs(2), "header read took {took:?}");
    println!("SmolLM2 header read in {took:?}");
}

#[test]
fn gemma3_header_matches_llama_cpp() {
    let Some(p) = real_model(GEMMA) else { return };
    let t = Instant::now();
    let h = read_header(&p).unwrap();
    let took = t.elapsed();
    assert_eq!(h.architecture(), Some("gemma3"));
    assert_eq!(h.block_count(), Some(18));
    assert_eq!(h.context_length(), Some(32768));
    assert_eq!(h.embedding_length(), Some(640));
    assert_eq!(h.head_count(), Some(4));
    assert_eq!(h.head_count_kv(), Some(1));
    assert_eq!(h.key_length(), Some(256));
    assert_eq!(h.value_length(), Some(256));
    assert_eq!(h.sliding_window(), Some(512));
    assert_eq!(h.file_type().as_deref(), Some("Q4_K_M"));
    // llama.cpp prints "model params = 268.10 M".
    assert_eq!(h.parameter_count(), 268_098_176);
    assert_eq!(h.vocab_size(), Some(262_144));
    assert_eq!(h.chat_template(), None, "base model has no template");
    assert_eq!(h.license(), Some("gemma"));
    assert_eq!(h.bos_token_id(), Some(2));
    assert_eq!(h.eos_token_id(), Some(1));
    assert_eq!(h.file_size, 253_113_024);
    assert_eq!(h.tensor_data_size(), 246_587_904);
    assert!(took < Duration::from_secs(2), "header read took {took:?}");
    println!("Gemma 3 header read in {took:?}");
}

#[test]
fn tiny_builder_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = Builder::tiny().write(dir.path(), "tiny.gguf");
    let h = read_header(&p).unwrap();
    assert_eq!(h.architecture(), Some("llama"));
    assert_eq!(h.parameter_count(), 64 * 3 + 64);
    assert_eq!(h.file_type().as_deref(), Some("F32"));
}

#[test]
fn truncated_at_every_offset_of_a_real_header() {
    let Some(p) = real_model(SMOL) else { return };
    let full = std::fs::read(&p).unwrap();
    let h = read_header(&p).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    // Every offset of the first 4 KiB, then a spread through the header and the data.
    let mut offsets: Vec<usize> = (0..4096).collect();
    let header_end = h.data_offset as usize;
    offsets.extend((1..=60).map(|i| 4096 + (header_end - 4096) * i / 61));
    offsets.extend([header_end - 1, header_end, header_end + 1]);
    offsets.extend((1..=10).map(|i| header_end + (full.len() - header_end) * i / 11));
    offsets.push(full.len() - 1);
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for &n in &offsets {
        std::fs::write(&cut, &full[..n]).unwrap();
        let e = read_header(&cut).expect_err("a truncated file must be refused");
        let code = e.code();
        // Cut inside the header: reported as truncated (or as a length that does not fit
        // what is left); cut in the data: a tensor out of bounds.
        let ok = match n {
            0 => code == "gguf_empty",
            n if n < header_end => code == "gguf_truncated" || code == "gguf_absurd_value",
            _ => code == "gguf_tensor_out_of_bounds",
        };
        assert!(ok, "cut at {n}: unexpected {code}: {e}");
        *kinds.entry(code).or_default() += 1;
    }
    println!("{} truncations, errors by kind: {kinds:?}", offsets.len());
    // The message says where and what.
    std::fs::write(&cut, &full[..100]).unwrap();
    let msg = read_header(&cut).unwrap_err().to_string();
    assert!(msg.contains("truncated at byte 100"), "{msg}");
    assert!(msg.contains("tensor infos"), "{msg}");
    // Cut in the middle of the chat template string: names the key being read.
    std::fs::write(&cut, &full[..header_end / 2]).unwrap();
    let msg = read_header(&cut).unwrap_err().to_string();
    assert!(msg.contains("truncated at byte"), "{msg}");
    println!("example: {msg}");
}

#[test]
fn empty_and_tiny_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.gguf");
    std::fs::write(&p, b"").unwrap();
    assert_eq!(read_header(&p).unwrap_err().code(), "gguf_empty");
    std::fs::write(&p, b"GG").unwrap();
    assert_eq!(read_header(&p).unwrap_err().code(), "gguf_truncated");
    std::fs::write(&p, b"<h").unwrap();
    assert_eq!(read_header(&p).unwrap_err().code(), "gguf_not_gguf");
    let missing = dir.path().join("missing.gguf");
    assert_eq!(read_header(&missing).unwrap_err().code(), "gguf_io");
}

#[test]
fn wrong_magic() {
    let mut b = Builder::tiny();
    b.magic = *b"<!DO";
    let e = err_of(&b);
    assert_eq!(e.code(), "gguf_not_gguf");
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
}

#[test]
fn unsupported_versions() {
    for (v, hint) in [
        (1u32, "v1"),
        (4, ""),
        (0x0300_0000, "big-endian"),
        (u32::MAX, ""),
    ] {
        let mut b = Builder::tiny();
        b.version = v;
        let e = err_of(&b);
        assert_eq!(e.code(), "gguf_unsupported_version", "{e}");
        assert!(e.to_string().contains(hint), "{e}");
    }
    let mut b = Builder::tiny();
    b.version = 2;
    let dir = tempfile::tempdir().unwrap();
    assert!(read_header(b.write(dir.path(), "v2.gguf")).is_ok());
}

#[test]
fn absurd_counts() {
    let mut b = Builder::tiny();
    b.tensor_count_override = Some(u64::MAX);
    assert_eq!(err_of(&b).code(), "gguf_absurd_value");
    let mut b = Builder::tiny();
    b.tensor_count_override = Some(1 << 40);
    assert_eq!(err_of(&b).code(), "gguf_absurd_value");
    let mut b = Builder::tiny();
    b.kv_count_override = Some(u64::MAX / 2);
    let e = err_of(&b);
    assert_eq!(e.code(), "gguf_absurd_value");
    assert!(e.to_string().contains("metadata key/value"), "{e}");
    // One more kv than written: runs into the tensor infos and fails cleanly.
    let mut b = Builder::tiny();
    b.kv_count_override = Some(b.kv.len() as u64 + 1);
    let _ = err_of(&b);
}

#[test]
fn absurd_lengths() {
    // A string whose length is far beyond the file.
    let mut raw = Vec::new();
    raw.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
    raw.extend_from_slice(b"abc");
    let e = err_of(&Builder::tiny().kv("general.name", V::Raw(8, raw)));
    assert_eq!(e.code(), "gguf_absurd_value");
    assert!(e.to_string().contains("value of general.name"), "{e}");
    // An array claiming 2^60 u32 items.
    let mut raw = Vec::new();
    raw.extend_from_slice(&4u32.to_le_bytes());
    raw.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let e = err_of(&Builder::tiny().kv("x.arr", V::Raw(9, raw)));
    assert_eq!(e.code(), "gguf_absurd_value");
    // A string array whose length fits the counts but whose items lie about their size.
    let mut raw = Vec::new();
    raw.extend_from_slice(&8u32.to_le_bytes());
    raw.extend_from_slice(&2000u64.to_le_bytes());
    for _ in 0..2000 {
        raw.extend_from_slice(&1u64.to_le_bytes());
        raw.push(b'a');
    }
    let ok = Builder::tiny().kv("x.big", V::Raw(9, raw.clone()));
    let dir = tempfile::tempdir().unwrap();
    let h = read_header(ok.write(dir.path(), "ok.gguf")).unwrap();
    assert!(matches!(
        h.get("x.big"),
        Some(GgufValue::ArraySummary { len: 2000, .. })
    ));
    let mut bad = raw;
    let at = 4 + 8 + 1000 * 9;
    bad[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    let e = err_of(&Builder::tiny().kv("x.big", V::Raw(9, bad)));
    assert_eq!(e.code(), "gguf_absurd_value");
    assert!(e.to_string().contains("item 1000 of array x.big"), "{e}");
}

#[test]
fn wrong_value_types() {
    let e = err_of(&Builder::tiny().kv("x.weird", V::Raw(13, vec![0; 8])));
    assert_eq!(e.code(), "gguf_unknown_value_type");
    assert!(e.to_string().contains("x.weird"), "{e}");
    let e = err_of(&Builder::tiny().kv("x.weird", V::Raw(0xFFFF_FFFF, vec![0; 8])));
    assert_eq!(e.code(), "gguf_unknown_value_type");
    // Array of an unknown type.
    let mut raw = 77u32.to_le_bytes().to_vec();
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.extend_from_slice(&[0; 8]);
    assert_eq!(
        err_of(&Builder::tiny().kv("x.arr", V::Raw(9, raw))).code(),
        "gguf_unknown_value_type"
    );
    // Nested arrays (llama.cpp refuses them).
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend_from_slice(&1u64.to_le_bytes());
    assert_eq!(
        err_of(&Builder::tiny().kv("x.nested", V::Raw(9, raw))).code(),
        "gguf_bad_metadata"
    );
    // A bool that is neither 0 nor 1.
    assert_eq!(
        err_of(&Builder::tiny().kv("x.flag", V::Bool(7))).code(),
        "gguf_absurd_value"
    );
    // Architecture of the wrong type, alignment not a power of two, duplicate key.
    assert_eq!(
        err_of(&Builder::tiny().kv("general.architecture", V::U32(1))).code(),
        "gguf_bad_metadata"
    );
    assert_eq!(
        err_of(&Builder::tiny().kv("general.alignment", V::U32(24))).code(),
        "gguf_bad_metadata"
    );
    let mut b = Builder::tiny();
    b.kv.push(("general.name".into(), s("again")));
    assert_eq!(err_of(&b).code(), "gguf_bad_metadata");
}

#[test]
fn architectures() {
    let e = err_of(&Builder::tiny().kv("general.architecture", s("llama9000")));
    assert_eq!(e.code(), "gguf_unknown_architecture");
    assert!(e.to_string().contains("llama9000"), "{e}");
    let e = err_of(&Builder::tiny().without("general.architecture"));
    assert_eq!(e.code(), "gguf_missing_architecture");
    let dir = tempfile::tempdir().unwrap();
    for arch in [
        "gemma3",
        "qwen3",
        "gpt-oss",
        "mistral3",
        "deepseek2",
        "granite",
    ] {
        let b = Builder::tiny().kv("general.architecture", s(arch));
        assert!(read_header(b.write(dir.path(), "a.gguf")).is_ok(), "{arch}");
    }
    // Later parts of a split model carry no architecture; that is fine.
    let b = Builder::tiny()
        .without("general.architecture")
        .kv("split.no", V::Raw(2, 1u16.to_le_bytes().to_vec()))
        .kv("split.count", V::Raw(2, 2u16.to_le_bytes().to_vec()));
    let h = read_header(b.write(dir.path(), "p2.gguf")).unwrap();
    assert!(h.is_split());
    assert_eq!(h.split_no(), Some(1));
}

#[test]
fn bad_tensors() {
    let tensor = |dims: Vec<u64>, type_id: u32, offset: Option<u64>| Tensor {
        name: "bad.weight".into(),
        dims,
        type_id,
        offset,
    };
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![1, 1, 1, 1, 1], 0, None));
    assert_eq!(err_of(&b).code(), "gguf_absurd_value");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![32], 4, None));
    assert_eq!(err_of(&b).code(), "gguf_unknown_tensor_type");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![1 << 40, 1 << 40], 0, None));
    assert_eq!(err_of(&b).code(), "gguf_bad_tensor");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![31], 2, None)); // Q4_0 rows must be multiples of 32
    assert_eq!(err_of(&b).code(), "gguf_bad_tensor");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![64], 0, Some(7))); // misaligned
    assert_eq!(err_of(&b).code(), "gguf_bad_tensor");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![64], 0, Some(1 << 40))); // far past the end
    let e = err_of(&b);
    assert_eq!(e.code(), "gguf_tensor_out_of_bounds");
    assert!(e.to_string().contains("bad.weight"), "{e}");
    let mut b = Builder::tiny();
    b.tensors.push(tensor(vec![64], 0, Some(u64::MAX - 31))); // offset overflow
    assert_eq!(err_of(&b).code(), "gguf_tensor_out_of_bounds");
    let mut b = Builder::tiny();
    b.data_len_override = Some(10); // data cut short
    assert_eq!(err_of(&b).code(), "gguf_tensor_out_of_bounds");
    let mut b = Builder::tiny();
    b.tensors[1].name = "token_embd.weight".into();
    assert_eq!(err_of(&b).code(), "gguf_bad_tensor");
}

#[test]
fn split_file_names() {
    use conclave_core::gguf::{parse_split_file_name, split_file_name};
    assert_eq!(
        parse_split_file_name("Qwen3-235B-Q4_K_M-00001-of-00003.gguf"),
        Some(("Qwen3-235B-Q4_K_M", 1, 3))
    );
    assert_eq!(split_file_name("m", 2, 3), "m-00002-of-00003.gguf");
    assert_eq!(parse_split_file_name("m-00004-of-00003.gguf"), None);
    assert_eq!(parse_split_file_name("m-1-of-3.gguf"), None);
    assert_eq!(
        parse_split_file_name("SmolLM2-135M-Instruct.Q4_1.gguf"),
        None
    );
}
