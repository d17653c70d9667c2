-- bench/arena_mix.lua: wrk script for bench/arena.sh: HttpArena's request mixes, rotated request by
-- request (per wrk thread). Usage: wrk ... -s bench/arena_mix.lua URL -- MIX [CLOSE_EVERY]
--   baseline   GET /baseline11?a=13&b=42, the same POST with a Content-Length body "20", and with a
--              chunked body "20" (the arena's get.raw, post_cl.raw, post_chunked.raw)
--   json       GET /json/{count}?m= over the arena's seven pairs (1,3) (5,7) (10,2) (15,5) (25,4) (40,8) (50,6)
--   json-comp  GET /json/25?m=4, /json/40?m=8, /json/50?m=6 with Accept-Encoding: gzip, br (the arena's
--              json-gzip-25.raw, -40.raw, -50.raw)
--   json-gzip  the same three with Accept-Encoding: gzip (every server then sends gzip: like for like)
--   upload     POST /upload of 512,000, 2,097,152, 10,485,760 and 20,971,520 bytes (the arena's
--              upload-500k.raw ... upload-20m.raw), five requests of one size, then the next size
--              (the arena sends five per connection, -r 5, and each new connection takes the next
--              template); give CLOSE_EVERY 5 for the arena's reconnection
-- CLOSE_EVERY N > 0: every Nth request asks Connection: close, so connections are re-made (the
-- arena's limited-conn closes each connection after 10 requests; wrk's counter is per thread, so this
-- is that rate on average, not per connection).
--
-- Every request is built once in init (the upload bodies too: 33 MB of Lua strings), so request()
-- only picks one; wrk still copies the picked request into the connection's buffer each time.

local reqs, closing, i, close_every, per_step = {}, {}, 0, 0, 1

init = function(args)
   local mix = args[1] or "baseline"
   close_every = tonumber(args[2]) or 0
   local host = wrk.host .. ":" .. wrk.port
   local heads = {}
   local function raw(head, body)
      heads[#heads + 1] = { head .. "Host: " .. host .. "\r\n", "\r\n" .. (body or "") }
   end
   if mix == "baseline" then
      raw("GET /baseline11?a=13&b=42 HTTP/1.1\r\n")
      raw("POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n", "20")
      raw("POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
          "2\r\n20\r\n0\r\n\r\n")
   elseif mix == "json" then
      for _, p in ipairs({{1, 3}, {5, 7}, {10, 2}, {15, 5}, {25, 4}, {40, 8}, {50, 6}}) do
         raw("GET /json/" .. p[1] .. "?m=" .. p[2] .. " HTTP/1.1\r\n")
      end
   elseif mix == "json-comp" or mix == "json-gzip" then
      local ae = mix == "json-comp" and "gzip, br" or "gzip"
      for _, p in ipairs({{25, 4}, {40, 8}, {50, 6}}) do
         raw("GET /json/" .. p[1] .. "?m=" .. p[2] .. " HTTP/1.1\r\nAccept-Encoding: " .. ae .. "\r\n")
      end
   elseif mix == "upload" then
      local block = string.rep("0123456789abcdef", 64) -- 1 KiB
      for _, n in ipairs({512000, 2097152, 10485760, 20971520}) do
         local body = string.rep(block, math.floor(n / 1024)) .. string.sub(block, 1, n % 1024)
         raw("POST /upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: " .. n .. "\r\n", body)
      end
      per_step = 5
   else
      error("unknown mix " .. mix)
   end
   for k, h in ipairs(heads) do
      reqs[k] = h[1] .. h[2]
      closing[k] = h[1] .. "Connection: close\r\n" .. h[2]
   end
end

request = function()
   local k = math.floor(i / per_step) % #reqs + 1
   i = i + 1
   if close_every > 0 and i % close_every == 0 then
      return closing[k]
   end
   return reqs[k]
end
