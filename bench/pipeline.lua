-- bench/pipeline.lua: wrk script that sends N requests back to back on each connection write
-- (HTTP/1.1 pipelining, the TechEmpower approach). Usage: wrk ... -s bench/pipeline.lua URL -- 16
-- wrk counts every response in "N requests in", but records one latency sample per batch, so the
-- percentiles are for a whole batch of N.

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      -- wrk.format() builds "GET <path of URL> HTTP/1.1" with the Host header from the URL
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end
