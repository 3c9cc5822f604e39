//! OpenAI chat completions <-> Anthropic Messages translation.
