-- wrk script: every request is an addUser with a login and e-mail no other request uses.
--
--   wrk -t1 -c8 -d10s -s bench/adduser.lua http://127.0.0.1:8080 -- \
--       TRANSPORT TOKEN DEPARTMENT_ID PREFIX [PASSWORD] [MAX_RESPONSES]
--
-- TRANSPORT is soap, rest-xml or rest-json. PREFIX must be unique per run (the database keeps
-- the users of earlier runs); each wrk thread adds its own number, each request a counter.
-- With MAX_RESPONSES > 0 the thread stops after that many responses (use one thread) and
-- prints "BENCH_STOPPED": wrk itself only stops at the end of -d or on SIGINT, which the caller
-- sends on that line.
-- done() prints one line "BENCH_RESULT {json}" with the counts and latency percentiles; any
-- status outside 200-299 is counted by code, and socket errors and timeouts are reported too.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

local transport, token, department, login_prefix, password
local max_responses = 0
local counter = 0
local path, headers

-- Globals read back by done() through thread:get().
sent = 0
responses = 0
ok = 0
statuses = {}

local function xml_escape(text)
   return (text:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

function init(args)
   transport, token, department, login_prefix = args[1], args[2], args[3], args[4]
   if args[5] ~= nil and args[5] ~= "" and args[5] ~= "-" then
      password = args[5]
   end
   max_responses = tonumber(args[6] or "0") or 0
   login_prefix = login_prefix .. "." .. thread_number .. "."
   if transport == "soap" then
      path = "/soap"
      headers = {["Content-Type"] = "text/xml; charset=utf-8", ["SOAPAction"] = "\"addUser\""}
   elseif transport == "rest-xml" then
      path = "/user"
      headers = {["Content-Type"] = "application/xml", ["Authorization"] = "Bearer " .. token}
   elseif transport == "rest-json" then
      path = "/user"
      headers = {
         ["Content-Type"] = "application/json",
         ["Accept"] = "application/json",
         ["Authorization"] = "Bearer " .. token,
      }
   else
      error("unknown transport " .. tostring(transport))
   end
end

local function body_for(login)
   local email = login .. "@bench.test"
   if transport == "rest-json" then
      local pw = password and (',"password":"' .. password .. '"') or ""
      return '{"departmentId":"' .. department .. '","fields":{"login":"' .. login
         .. '","email":"' .. email .. '"}' .. pw .. "}"
   elseif transport == "rest-xml" then
      local pw = password and ("<password>" .. xml_escape(password) .. "</password>") or ""
      return "<request><departmentId>" .. department .. "</departmentId><fields><login>"
         .. login .. "</login><email>" .. email .. "</email></fields>" .. pw .. "</request>"
   end
   local pw = password and ("<password>" .. xml_escape(password) .. "</password>") or ""
   return '<?xml version="1.0" encoding="utf-8"?>'
      .. '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"'
      .. ' xmlns="http://ispringlearn.com/go/services/api/soap"><SOAP-ENV:Body>'
      .. "<AddUserRequest><token>" .. token .. "</token><login>" .. login .. "</login>"
      .. "<email>" .. email .. "</email>" .. pw .. "<departmentId>" .. department
      .. "</departmentId></AddUserRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
end

function request()
   counter = counter + 1
   sent = sent + 1
   return wrk.format("POST", path, headers, body_for(login_prefix .. counter))
end

function response(status, _headers, _body)
   responses = responses + 1
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
   end
   if max_responses > 0 and responses == max_responses then
      wrk.thread:stop()
      io.write("BENCH_STOPPED\n")
      io.flush()
   end
end

function done(summary, latency, _requests)
   local total = {sent = 0, responses = 0, ok = 0}
   local by_status = {}
   for _, thread in ipairs(threads) do
      total.sent = total.sent + thread:get("sent")
      total.responses = total.responses + thread:get("responses")
      total.ok = total.ok + thread:get("ok")
      for code, count in pairs(thread:get("statuses")) do
         by_status[code] = (by_status[code] or 0) + count
      end
   end
   local codes = {}
   for code, count in pairs(by_status) do
      table.insert(codes, string.format('"%s":%d', code, count))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"sent":%d,"responses":%d,"ok":%d,"bad_status":{%s},'
         .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.duration, total.sent, total.responses, total.ok, table.concat(codes, ","),
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
