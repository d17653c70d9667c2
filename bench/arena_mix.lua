-- bench/arena_mix.lua: wrk script for bench/arena.sh: HttpArena's request mixes, rotated request by
-- request (per wrk thread). Usage: wrk ... -s bench/arena_mix.lua URL -- MIX [CLOSE_EVERY]
--   baseline  GET /baseline11?a=13&b=42, the same POST with a Content-Length body "20", and with a
--             chunked body "20" (the arena's three templates)
--   json      GET /json/{count}?m= over the arena's seven pairs (1,3) (5,7) (10,2) (15,5) (25,4) (40,8) (50,6)
-- CLOSE_EVERY N > 0: every Nth request asks Connection: close, so connections are re-made (the
-- arena's limited-conn closes each connection after 10 requests; wrk's counter is per thread, so this
-- is that rate on average, not per connection).

local reqs, i, close_every = {}, 0, 0

init = function(args)
   local mix = args[1] or "baseline"
   close_every = tonumber(args[2]) or 0
   local host = wrk.host .. ":" .. wrk.port
   local function raw(head, body)
      return head .. "Host: " .. host .. "\r\n" .. "%s\r\n" .. (body or "")
   end
   if mix == "baseline" then
      reqs = {
         raw("GET /baseline11?a=13&b=42 HTTP/1.1\r\n"),
         raw("POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n", "20"),
         raw("POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
             "2\r\n20\r\n0\r\n\r\n"),
      }
   elseif mix == "json" then
      for _, p in ipairs({{1, 3}, {5, 7}, {10, 2}, {15, 5}, {25, 4}, {40, 8}, {50, 6}}) do
         reqs[#reqs + 1] = raw("GET /json/" .. p[1] .. "?m=" .. p[2] .. " HTTP/1.1\r\n")
      end
   else
      error("unknown mix " .. mix)
   end
end

request = function()
   i = i + 1
   local r = reqs[(i % #reqs) + 1]
   if close_every > 0 and i % close_every == 0 then
      return string.format(r, "Connection: close\r\n")
   end
   return string.format(r, "")
end
