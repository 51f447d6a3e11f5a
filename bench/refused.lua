-- wrk script for `paytool serve`: POST /v1/payments that the API refuses before the
-- store, a floor under bench/payments.lua's payment (bench/payment_cost.sh).
--
-- Environment:
--   BENCH_KEY  the Bearer key: a merchant's (sk_test_...) for a 400, refused after the
--              body is read and parsed (amount 0, the last field, so the whole body is
--              parsed first); any unknown key for a 401, refused after the key's hash
--
-- The body and headers are a payment's (bench/payments.lua), so the two floors differ
-- from a payment only in how far along its path the request gets. Every answer is a
-- refusal, so wrk's own count of answers of 400 and above is the number of requests.

lean_answers = true
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

wrk.method = "POST"
wrk.path = "/v1/payments"
wrk.body = '{"currency":"usd","card":{"number":"4242424242424242","exp_month":12,' ..
           '"exp_year":2034},"capture":true,"amount":0}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk_test_unknown")
wrk.headers["Idempotency-Key"] = "refused-before-the-store"
