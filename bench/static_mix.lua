-- bench/static_mix.lua: wrk script for bench/static.sh: HttpArena's static profile, the 20 files under
-- /static/ requested round-robin (per wrk thread), every request with the same Accept-Encoding.
-- Usage: wrk ... -s bench/static_mix.lua URL -- CODING [FILE]
--   CODING  br    Accept-Encoding: br;q=1, gzip;q=0.8 (the arena's header)
--           gzip  Accept-Encoding: gzip
--           none  no Accept-Encoding (the originals)
--   FILE    one file of the set instead of the rotation (e.g. reset.css)

local FILES = {
   "reset.css", "layout.css", "theme.css", "components.css", "utilities.css",
   "analytics.js", "helpers.js", "app.js", "vendor.js", "router.js",
   "header.html", "footer.html", "regular.woff2", "bold.woff2", "logo.svg",
   "icon-sprite.svg", "hero.webp", "thumb1.webp", "thumb2.webp", "manifest.json",
}
local CODINGS = { br = "br;q=1, gzip;q=0.8", gzip = "gzip", none = nil }

local reqs, i = {}, 0

init = function(args)
   local coding = args[1] or "br"
   if coding ~= "none" and not CODINGS[coding] then error("unknown coding " .. coding) end
   local ae = CODINGS[coding] and ("Accept-Encoding: " .. CODINGS[coding] .. "\r\n") or ""
   local files = args[2] and { args[2] } or FILES
   local host = wrk.host .. ":" .. wrk.port
   for _, f in ipairs(files) do
      reqs[#reqs + 1] = "GET /static/" .. f .. " HTTP/1.1\r\nHost: " .. host .. "\r\n" .. ae .. "\r\n"
   end
end

request = function()
   i = i + 1
   return reqs[(i % #reqs) + 1]
end
