"""Drives a modelroute sidecar with the official OpenAI Python SDK.

Usage: python sdk_check.py BASE_URL CASE
Prints one JSON object describing what the SDK saw; the Rust test asserts on it.
"""

import json
import sys

import openai


def main() -> None:
    base_url, case = sys.argv[1], sys.argv[2]
    # The app holds no real key: the sidecar injects the provider's. max_retries=0 so
    # the SDK's own retries do not hide what the sidecar answered.
    client = openai.OpenAI(base_url=base_url, api_key="app-placeholder", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]
    out: dict = {"case": case}
    try:
        if case == "plain":
            r = client.chat.completions.create(model="m", messages=messages)
            out.update(content=r.choices[0].message.content, finish=r.choices[0].finish_reason,
                       prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)
        elif case in ("stream", "stream_usage"):
            extra = {"stream_options": {"include_usage": True}} if case == "stream_usage" else {}
            chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True, **extra))
            out.update(
                content="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                finish=[c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
                usage=[c.usage.completion_tokens for c in chunks if c.usage],
                chunks=len(chunks),
            )
        elif case == "embeddings":
            r = client.embeddings.create(model="m-embed", input=["a", "b"])
            out.update(count=len(r.data), dims=len(r.data[0].embedding))
        elif case == "models":
            out.update(ids=[m.id for m in client.models.list()])
        elif case == "unknown_model":
            client.chat.completions.create(model="no-such-model", messages=messages)
        elif case in ("upstream_down", "stream_broken"):
            stream = case == "stream_broken"
            r = client.chat.completions.create(model="m", messages=messages, stream=stream)
            if stream:
                got = []
                for c in r:
                    got.append(c.choices[0].delta.content or "" if c.choices else "")
                out.update(content="".join(got))
        else:
            raise SystemExit(f"unknown case {case}")
    except openai.APIStatusError as e:
        out.update(error=type(e).__name__, status=e.status_code, message=e.message,
                   code=(e.body or {}).get("code") if isinstance(e.body, dict) else None)
    except openai.APIError as e:
        out.update(error=type(e).__name__, message=e.message)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
