--
-- A minimal stand-in for APISIX's standalone mode, for tests on a machine
-- where APISIX cannot be installed: it reads the same apisix.yaml a real
-- deployment uses (with APISIX's ${{VAR}} / ${{VAR:=default}} substitution),
-- matches a request to a route by uri/uris (exact, or a trailing `*`) and
-- method, runs each route plugin's check_schema and rewrite phase, answers
-- when a plugin returns `code, body`, and otherwise proxies to the route's
-- upstream, round robin over its nodes.
--
local lyaml = require("lyaml")
local cjson = require("cjson.safe")
local ngx = ngx

local _M = {}
local routes = {}
local cursor = {}

local function substitute(text)
    return (text:gsub("%${{([%w_]+):?=?([^}]*)}}", function(name, default)
        return os.getenv(name) or default
    end))
end

local function matches_uri(pattern, uri)
    if pattern:sub(-1) == "*" then
        return uri:sub(1, #pattern - 1) == pattern:sub(1, -2)
    end
    return uri == pattern
end

function _M.init(path)
    local file = assert(io.open(path, "r"))
    local text = file:read("*a")
    file:close()
    assert(text:match("#END%s*$"), "apisix.yaml must end with #END, as APISIX requires")
    local config = lyaml.load(substitute(text))
    for _, route in ipairs(config.routes or {}) do
        local nodes = {}
        for node, _ in pairs(route.upstream.nodes) do
            nodes[#nodes + 1] = node
        end
        table.sort(nodes)
        local plugins = {}
        for name, conf in pairs(route.plugins or {}) do
            local plugin = require("apisix.plugins." .. name)
            local ok, err = plugin.check_schema(conf)
            assert(ok, "route " .. tostring(route.id) .. ": plugin " .. name .. ": " .. tostring(err))
            plugins[#plugins + 1] = { plugin = plugin, conf = conf }
        end
        table.sort(plugins, function(a, b) return a.plugin.priority > b.plugin.priority end)
        routes[#routes + 1] = {
            id = route.id,
            uris = route.uris or { route.uri },
            methods = route.methods,
            plugins = plugins,
            nodes = nodes,
        }
    end
end

local function find_route(uri, method)
    for _, route in ipairs(routes) do
        local method_ok = not route.methods
        for _, m in ipairs(route.methods or {}) do
            if m == method then
                method_ok = true
            end
        end
        if method_ok then
            for _, pattern in ipairs(route.uris) do
                if matches_uri(pattern, uri) then
                    return route
                end
            end
        end
    end
end

local function respond(code, body)
    ngx.status = code
    ngx.header["Content-Type"] = "application/json"
    if body then
        ngx.say(type(body) == "table" and cjson.encode(body) or body)
    end
    return ngx.exit(code)
end

function _M.rewrite()
    local route = find_route(ngx.var.uri, ngx.req.get_method())
    if not route then
        return respond(404, { error_msg = "404 Route Not Found" })
    end
    local ctx = {}
    for _, entry in ipairs(route.plugins) do
        if entry.plugin.rewrite then
            local code, body = entry.plugin.rewrite(entry.conf, ctx)
            if code then
                return respond(code, body)
            end
        end
    end
    local n = (cursor[route.id] or 0) % #route.nodes + 1
    cursor[route.id] = n
    ngx.var.upstream = route.nodes[n]
end

return _M
