"""Drives a modelroute sidecar with the providers' own SDKs (native pass-through).

Usage: python native_check.py BASE_URL CASE
Prints one JSON object describing what the SDK saw; the Rust test asserts on it.
"""

import json
import sys


def anthropic_case(base_url: str, case: str) -> dict:
    import anthropic

    # ANTHROPIC_BASE_URL-style: the SDK appends /v1/messages. No real key in the app.
    client = anthropic.Anthropic(base_url=base_url, api_key="app-placeholder", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]
    out: dict = {"case": case}
    try:
        if case == "anthropic_plain":
            m = client.messages.create(model="m", max_tokens=100, messages=messages)
            out.update(text="".join(b.text for b in m.content if b.type == "text"),
                       stop=m.stop_reason, input=m.usage.input_tokens, output=m.usage.output_tokens)
        elif case == "anthropic_stream":
            with client.messages.stream(model="m", max_tokens=100, messages=messages) as s:
                text = "".join(s.text_stream)
                final = s.get_final_message()
            out.update(text=text, stop=final.stop_reason, output=final.usage.output_tokens)
        elif case == "anthropic_unknown_model":
            client.messages.create(model="no-such-model", max_tokens=10, messages=messages)
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        out.update(error=type(e).__name__, status=e.status_code, type=(body.get("error") or {}).get("type"))
    return out


def gemini_case(base_url: str, case: str) -> dict:
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key="app-placeholder",
                          http_options=types.HttpOptions(base_url=base_url, api_version="v1beta"))
    out: dict = {"case": case}
    try:
        if case == "gemini_plain":
            r = client.models.generate_content(model="m", contents="Say hello")
            out.update(text=r.text, prompt=r.usage_metadata.prompt_token_count)
        elif case == "gemini_stream":
            text = "".join(c.text or "" for c in client.models.generate_content_stream(model="m", contents="Say hello"))
            out.update(text=text)
        elif case == "gemini_unknown_model":
            client.models.generate_content(model="no-such-model", contents="x")
    except errors.APIError as e:
        out.update(error=type(e).__name__, status=e.code, status_name=e.status)
    return out


def main() -> None:
    base_url, case = sys.argv[1], sys.argv[2]
    out = anthropic_case(base_url, case) if case.startswith("anthropic") else gemini_case(base_url, case)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
