#!/usr/bin/env python3
"""Writes tools/mock_default_{good,flaky}.json: scripts for the mock endpoint
(`dsv4 eval --mock-serve SCRIPT`) that answer the default suite, so that the
whole pipeline (report, charts, comparison) can be demonstrated without a
model.  "good" answers correctly with short delays; "flaky" is slower, gets
some answers wrong on the first attempt, and fails a few requests.
Run from the repository root: python3 tools/mock_scripts.py"""
import json, random, re

suite = [json.loads(l) for l in open("eval/suites/default.jsonl") if l.strip() and not l.startswith("#")]

answers = {
 "extract_invoice": ['{"invoice_number":"INV-2291","vendor":"Northwind Traders","total":13.5}', '{"invoice_number":"INV-0042","vendor":"Acme Supplies Ltd","total":249.99}'],
 "extract_contact": '{"name":"Maria Lopez","email":"maria.lopez@contoso.com","phone":"+1 415 555 0132"}',
 "extract_event": '{"title":"Rust Meetup","date":"2024-06-14","city":"Leeds"}',
 "extract_product": '{"name":"SoundMax X2","price":79,"currency":"GBP","in_stock":false}',
 "extract_address": '{"street":"221B Baker Street","city":"London","postcode":"NW1 6XE","country":"United Kingdom"}',
 "extract_order_items": '{"items":[{"sku":"A-100","qty":3},{"sku":"B-7","qty":12}]}',
 "extract_job_posting": '{"role":"Backend Engineer","seniority":"senior","remote":true,"skills":["Go","PostgreSQL","Kubernetes"]}',
 "extract_medication": '{"drug":"Amoxicillin","dose_mg":500,"times_per_day":3}',
 "classify_sentiment": ["positive", "negative"], "classify_intent": ["technical_support", "cancellation"],
 "classify_topic": "technology", "classify_language": "German", "classify_spam": "yes",
 "classify_priority": '{"priority":"P1","team":"payments"}', "classify_toxicity": "ok",
 "summarize_meeting": "The billing rewrite moves to Q4. Lee sends the revised plan by Friday 12 July.",
 "summarize_incident": "An expired TLS certificate on the internal load balancer degraded the API for 41 minutes until it was renewed.",
 "summarize_tldr": "Three downtown garages become about 450 affordable homes by 2027, funded by a grant and a bond.",
 "summarize_bullets": "- Customer was charged twice for invoice 8812\n- Refund of 59 EUR issued\n- Switched to annual billing",
 "summarize_json_keypoints": '{"pros":["battery life","bright screen"],"cons":["heavy","loud fan"]}',
 "rewrite_formal": "Dear colleague, I am unfortunately unable to attend on Thursday the 9th. Could we reschedule to next week?",
 "rewrite_grammar": "They're going to the library tomorrow to return the books.",
 "rewrite_translate_fr": "La réunion est annulée à cause de la grève.",
 "rewrite_plain_language": "You cannot pass these rights to anyone else without our written permission.",
 "rewrite_shorten": "Ergonomic mesh office chair with lumbar support, 4D armrests and a 5-year warranty.",
 "sql_select": "SELECT * FROM orders ORDER BY total DESC LIMIT 5;",
 "sql_aggregate": "SELECT c.country, SUM(o.total) AS revenue FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.country ORDER BY revenue DESC;",
 "code_python_function": "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]",
 "code_regex": "^\\d{4}-\\d{2}-\\d{2}$", "code_bash": "cat *.log | wc -l",
 "code_json_transform": '[{"name":"Ada","age":36},{"name":"Linus","age":28}]',
 "rag_battery": "The battery lasts 12 hours of video playback [1].", "rag_charging": "It charges to 80% in 35 minutes [2].",
 "rag_unanswerable": "The price is not in the sources.", "rag_policy": "Your manager must approve it [3].",
 "rag_json_citations": '{"answer":"1.2 kg","citations":[3]}',
 "tool_weather_convert": "It is 68 °F and sunny in Paris.", "tool_order_refund": "Refund R-99102 has been issued.",
 "tool_flight_booking": "Booked FR88 (BK-5521) and emailed the confirmation.", "tool_calendar": "Design review booked.",
 "tool_inventory_reorder": "Reordered 50 units (PO-7781).", "tool_trip_planner": "Ticket T-443 booked.",
 "tool_crm_update": "Done.", "tool_currency_total": "The total is about 204 EUR.",
 "long_needle_passphrase": "violet-harbor-42", "long_needle_depth": "WH-7781", "long_needle_number": "3,417",
 "longdoc_contract_notice": "90 days written notice.", "longdoc_contract_law": "Ireland",
 "longdoc_contract_json": '{"term_months":24,"quarterly_fee_eur":18000,"availability_percent":99.9}',
}

def key_text(t, row):
    """A regex that identifies this template (and row) in the conversation."""
    p = t.get("prompt", "")
    literal = max(re.split(r"\{\{\w+\}\}", p), key=len).strip()
    pat = re.escape(literal[:60])
    if len(t.get("data", [])) > 1:
        v = next(iter(row.values()))
        pat += "[\\s\\S]*" + re.escape(str(v)[:40])
    return pat

def build(flavour):
    rnd = random.Random(7 if flavour == "good" else 11)
    slow = 1.0 if flavour == "good" else 2.2
    rules = []
    for t in suite:
        rows = t.get("data", [{}])
        for ri, row in enumerate(rows):
            a = answers[t["id"]]
            text = a[ri] if isinstance(a, list) else a
            base = dict(ttft_ms=round(rnd.uniform(40, 160) * slow), itl_ms=round(rnd.uniform(4, 12) * slow, 1))
            if t.get("long_context"):
                base["ttft_ms"] = round(300 * slow)
            pat = key_text(t, row)
            steps = t["check"].get("steps")
            if steps:
                for k, st in enumerate(steps):
                    args = st.get("args", {})
                    fn = next(x["function"] for x in t["tools"] if x["function"]["name"] == st["tool"])
                    full = {}
                    for pname, ps in fn["parameters"]["properties"].items():
                        if pname in args: full[pname] = args[pname]
                        elif ps.get("type") == "array": full[pname] = ["x"]
                        elif ps.get("type") in ("number", "integer"): full[pname] = 1
                        else: full[pname] = "x"
                    full = json.loads(re.sub(r"\{\{(\w+)\}\}", lambda m: str(row.get(m.group(1), "")), json.dumps(full)))
                    if flavour == "flaky" and t["id"] == "tool_trip_planner" and k == 3:
                        full = {"from": "station"}  # misses a required argument
                    rules.append(dict(match=pat, turn=k, response=dict(base, tool_calls=[dict(name=st["tool"], arguments=full)],
                                                                      prompt_tokens=rnd.randint(300, 600), completion_tokens=rnd.randint(15, 40))))
                rules.append(dict(match=pat, turn=len(steps), response=dict(base, content=text, prompt_tokens=rnd.randint(600, 900),
                                                                             completion_tokens=len(text.split()) + 3)))
                continue
            good = dict(base, content=text, prompt_tokens=rnd.randint(40, 400), completion_tokens=len(text.split()) * 2 + 2)
            if t.get("long_context"):
                good.pop("prompt_tokens")  # the mock counts chars/4
            resps = [good]
            if flavour == "flaky":
                r = rnd.random()
                if r < 0.2:
                    resps = [dict(base, content="I think the answer is unclear.", prompt_tokens=good.get("prompt_tokens", 100), completion_tokens=9), good]
                elif r < 0.27:
                    resps = [dict(status=503, body='{"error":{"message":"overloaded"}}'), good]
                elif r < 0.3:
                    resps = [dict(base, content="Sorry", truncate=True), good]
            rules.append(dict(match=pat, responses=resps, cycle=True) if len(resps) > 1 else dict(match=pat, response=good))
    return {"rules": rules, "default": {"content": "I do not know.", "ttft_ms": 50}}

for flavour in ("good", "flaky"):
    with open("tools/mock_default_%s.json" % flavour, "w") as f:
        json.dump(build(flavour), f, indent=1, ensure_ascii=False)
        f.write("\n")
