--
-- A stand-in for the small part of `apisix.core` that nimbus-auth uses, so
-- the plugin file runs unchanged under plain nginx + lua-nginx-module in the
-- tests. Not APISIX: see gateway-plugin/README.md for what it leaves out.
--
local cjson = require("cjson.safe")
local ngx = ngx

local core = { json = {}, request = {}, response = {}, schema = {}, log = {} }

core.json.decode = cjson.decode
core.json.encode = cjson.encode

function core.request.header(_, name)
    local value = ngx.req.get_headers()[name]
    if type(value) == "table" then
        return value[1]
    end
    return value
end

function core.request.set_header(_, name, value)
    ngx.req.set_header(name, value)
end

function core.request.get_uri_args(_)
    return ngx.req.get_uri_args()
end

function core.request.set_uri_args(_, args)
    ngx.req.set_uri_args(args)
end

function core.response.set_header(name, value)
    ngx.header[name] = value
end

function core.log.warn(...)
    ngx.log(ngx.WARN, ...)
end

function core.log.error(...)
    ngx.log(ngx.ERR, ...)
end

-- The JSON-schema subset plugin schemas here use: object, properties with
-- type string/integer/boolean, minLength, minimum, required, and defaults
-- (which APISIX fills in too).
local type_checks = {
    string = function(v) return type(v) == "string" end,
    boolean = function(v) return type(v) == "boolean" end,
    integer = function(v) return type(v) == "number" and v == math.floor(v) end,
    number = function(v) return type(v) == "number" end,
}

function core.schema.check(schema, conf)
    if type(conf) ~= "table" then
        return false, "configuration must be an object"
    end
    for _, name in ipairs(schema.required or {}) do
        if conf[name] == nil then
            return false, "property \"" .. name .. "\" is required"
        end
    end
    for name, rule in pairs(schema.properties or {}) do
        local value = conf[name]
        if value == nil then
            conf[name] = rule.default
        else
            local check = type_checks[rule.type]
            if check and not check(value) then
                return false, "property \"" .. name .. "\" must be a " .. rule.type
            end
            if rule.minLength and #value < rule.minLength then
                return false, "property \"" .. name .. "\" is shorter than " .. rule.minLength
            end
            if rule.minimum and value < rule.minimum then
                return false, "property \"" .. name .. "\" is below " .. rule.minimum
            end
        end
    end
    return true
end

return core
