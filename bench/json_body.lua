-- bench/json_body.lua: wrk script sending one JSON document from a file with a given method, for
-- bench/json.sh (POST /v1/echo, PUT /v1/kv/{key}). Usage: wrk ... -s bench/json_body.lua URL -- METHOD FILE
function init(args)
    local f = assert(io.open(args[2], "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = args[1]
    wrk.headers["Content-Type"] = "application/json"
end
