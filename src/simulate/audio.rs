//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart: `file` and
//! `model` required) and `POST /v1/audio/speech` (JSON; binary audio back).
//!
//! A transcription's text is fixed and names the upload (`Simulated transcription of
//! a.wav (N bytes).`), so a test can check the whole file arrived; `response_format` is
//! `json` (default), `text`, `verbose_json`, `srt` or `vtt`. GPT-4o transcription models
//! report token `usage` (10 audio tokens a second), `whisper-1` a duration (one second
//! per 16,000 bytes). Speech is
//! a fixed-size-per-character body of the requested format's media type.

use bytes::Bytes;
use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use super::body::Reply;
use super::error::ApiError;
use super::multipart::Form;
use super::text::tokens;

/// Audio bytes per simulated second.
const BYTES_PER_SECOND: usize = 16_000;

/// Input tokens of one second of audio (GPT-4o transcription usage).
const AUDIO_TOKENS_PER_SECOND: u64 = 10;

/// Speech bytes per input character.
const SPEECH_BYTES_PER_CHAR: usize = 64;

/// Transcribes (`translate` false) or translates an uploaded file.
pub fn transcribe(parts: &Parts, body: &[u8], translate: bool) -> Result<Reply, ApiError> {
    let form = Form::from_request(parts, body)?;
    let file = form.part("file").ok_or_else(|| ApiError::missing("file"))?;
    let model = form
        .text("model")
        .ok_or_else(|| ApiError::missing("model"))?;
    let name = file.filename.as_deref().unwrap_or("audio");
    let text = format!(
        "Simulated {} of {name} ({} bytes).",
        if translate {
            "translation"
        } else {
            "transcription"
        },
        file.data.len()
    );
    let seconds = file.data.len().div_ceil(BYTES_PER_SECOND).max(1);
    let format = form
        .text("response_format")
        .unwrap_or_else(|| "json".into());
    let plain = |s: String| Ok(Reply::Typed(Bytes::from(s), "text/plain; charset=utf-8"));
    match format.as_str() {
        "json" if translate => Reply::json(&json!({"text": text})),
        "json" => {
            let usage = if model.starts_with("whisper") {
                json!({"type": "duration", "seconds": seconds})
            } else {
                let audio = seconds as u64 * AUDIO_TOKENS_PER_SECOND;
                let output = tokens(&text);
                json!({
                    "type": "tokens",
                    "input_tokens": audio,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": audio},
                    "output_tokens": output,
                    "total_tokens": audio + output,
                })
            };
            Reply::json(&json!({"text": text, "usage": usage}))
        }
        "text" => plain(text),
        "verbose_json" => Reply::json(&json!({
            "task": if translate { "translate" } else { "transcribe" },
            "language": "english",
            "duration": seconds,
            "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text,
                "tokens": [], "temperature": 0.0, "avg_logprob": -0.1,
                "compression_ratio": 1.0, "no_speech_prob": 0.0}],
        })),
        "srt" => plain(format!(
            "1\n00:00:00,000 --> 00:00:{seconds:02},000\n{text}\n\n"
        )),
        "vtt" => plain(format!(
            "WEBVTT\n\n00:00:00.000 --> 00:00:{seconds:02}.000\n{text}\n\n"
        )),
        other => Err(ApiError::invalid(
            format!(
                "Invalid value: '{other}'. Supported values are: 'json', 'text', 'srt', 'verbose_json', and 'vtt'."
            ),
            Some("response_format"),
            Some("invalid_value"),
        )),
    }
}

#[derive(Deserialize)]
struct Speech {
    model: Option<String>,
    input: Option<String>,
    voice: Option<serde_json::Value>,
    response_format: Option<String>,
}

/// Speech of `input`: `SPEECH_BYTES_PER_CHAR` bytes per character, behind the format's
/// magic bytes.
pub fn speech(body: &[u8]) -> Result<Reply, ApiError> {
    let req: Speech = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    req.model.ok_or_else(|| ApiError::missing("model"))?;
    let input = req.input.ok_or_else(|| ApiError::missing("input"))?;
    req.voice.ok_or_else(|| ApiError::missing("voice"))?;
    let (magic, media): (&[u8], &'static str) = match req
        .response_format
        .as_deref()
        .unwrap_or("mp3")
    {
        "mp3" => (b"ID3", "audio/mpeg"),
        "opus" => (b"OggS", "audio/opus"),
        "aac" => (b"\xff\xf1", "audio/aac"),
        "flac" => (b"fLaC", "audio/flac"),
        "wav" => (b"RIFF", "audio/wav"),
        "pcm" => (b"", "audio/pcm"),
        other => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{other}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and 'pcm'."
                ),
                Some("response_format"),
                Some("invalid_value"),
            ));
        }
    };
    let mut audio = magic.to_vec();
    audio.resize(
        magic.len() + input.chars().count() * SPEECH_BYTES_PER_CHAR,
        0x55,
    );
    Ok(Reply::Typed(Bytes::from(audio), media))
}
