-- bench/hash_post.lua: wrk script for POST /v1/password/hash with a fixed JSON password, so wrk can
-- drive the Argon2id endpoint (pool_hash.sh). Usage: wrk ... -s bench/hash_post.lua URL
wrk.method = "POST"
wrk.body = '{"password":"correct horse battery staple"}'
wrk.headers["Content-Type"] = "application/json"
