#!/bin/sh
# Demo traffic for the Sluice stack: a mixed workload through the gateway every few
# seconds, on the routes of deploy/sluice/policies/demo.toml, so every dashboard panel fills.
#   SLUICE_URL (default http://127.0.0.1:8080)  SLUICE_KEY (default sk-sluice-demo)
#   ROUNDS (default 0 = forever)                 PAUSE seconds between rounds (default 5)
set -u
URL="${SLUICE_URL:-http://127.0.0.1:8080}"
KEY="${SLUICE_KEY:-sk-sluice-demo}"
ROUNDS="${ROUNDS:-0}"
PAUSE="${PAUSE:-5}"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT

# A long shared system prompt (well over 1,024 tokens) so prompt caching shows.
HANDBOOK="You are the support assistant of Example Corp. Follow the handbook below exactly."
i=1
while [ "$i" -le 120 ]; do
  HANDBOOK="$HANDBOOK Rule $i: answer politely, cite the relevant policy section, and never invent order numbers."
  i=$((i + 1))
done

chat() { # model system user stream
  printf '{"model":"%s","stream":%s,"messages":[{"role":"system","content":"%s"},{"role":"user","content":"%s"}]}' \
    "$1" "$4" "$2" "$3"
}

post() { # path body-file [extra header...]
  path="$1"; file="$2"; shift 2
  curl -sS -o /dev/null -w "%{http_code} $path $*\n" --max-time 120 \
    -H "authorization: Bearer $KEY" -H "content-type: application/json" "$@" \
    --data-binary "@$file" "$URL$path" || true
}

until curl -sf -o /dev/null "$URL/healthz"; do
  echo "waiting for $URL ..."; sleep 2
done

round=0
while [ "$ROUNDS" -eq 0 ] || [ "$round" -lt "$ROUNDS" ]; do
  round=$((round + 1))
  # Nightly summaries: held requests with a 24 h SLA, accumulated into one Batch API call.
  for n in 1 2 3 4; do
    chat gpt-4.1-mini "$HANDBOOK" "Summarise ticket $round-$n." false > "$DIR/batch$n.json"
    post /v1/chat/completions "$DIR/batch$n.json" -H "x-sla: 24h" &
  done
  # Support chat: interactive, sharing the handbook prefix (prompt cache), one streamed.
  for n in 1 2 3; do
    chat gpt-4o-mini "$HANDBOOK" "Customer $round-$n: where is my parcel?" false > "$DIR/chat.json"
    post /v1/chat/completions "$DIR/chat.json"
  done
  chat gpt-4o-mini "$HANDBOOK" "Customer $round: stream me the answer." true > "$DIR/stream.json"
  post /v1/chat/completions "$DIR/stream.json"
  # Ticket triage: minutes are fine (x-sla: semi), so flex.
  chat gpt-5-mini "Classify the ticket: refund or bug?" "Ticket $round: the app crashes." false > "$DIR/flex.json"
  post /v1/chat/completions "$DIR/flex.json" -H "x-sla: semi"
  # FAQ bot: the same question again and again, answered from the response cache.
  chat gpt-5 "You answer FAQs in one sentence." "What are your opening hours?" false > "$DIR/faq.json"
  post /v1/chat/completions "$DIR/faq.json"
  post /v1/chat/completions "$DIR/faq.json"
  # Embeddings (route "default").
  printf '{"model":"text-embedding-3-small","input":["document %s"],"encoding_format":"float"}' "$round" > "$DIR/emb.json"
  post /v1/embeddings "$DIR/emb.json"
  wait
  sleep "$PAUSE"
done
