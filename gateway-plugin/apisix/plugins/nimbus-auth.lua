--
-- nimbus-auth: verify Nimbus's HS256 JWTs at the APISIX edge.
--
-- Nimbus issues one token per user (`sub` = username, `iss` = "nimbus",
-- `exp`), all signed with one shared secret. APISIX's built-in `jwt-auth`
-- needs one consumer per key and so cannot pass the per-user `sub` upstream;
-- this plugin can. It checks the signature (HS256 only: `alg: none` and every
-- other algorithm are refused), `exp` and `nbf` with a grace period and the
-- issuer, then forwards the user to the upstream in `user_header` after
-- removing any such header the client sent. Failures answer 401 with a
-- `WWW-Authenticate` header, as `jwt-auth` does, and Nimbus's error body.
--
-- With `anonymous = true` (the `/fn/*` function URLs, where public
-- functions answer anybody) a request without a valid Nimbus token is let
-- through without an identity instead of refused: the API decides, per
-- function, whether the caller may call it, and an `Authorization` header
-- that is not a Nimbus token may be the function's own (a webhook's).
--
-- Settings follow `jwt-auth`'s names where they mean the same thing:
-- `header`, `query`, `hide_credentials`, `lifetime_grace_period`; `secret`
-- is stored encrypted (`encrypt_fields`). Nimbus keeps verifying tokens
-- itself (defence in depth), so keep `hide_credentials` false on Nimbus
-- routes: a token that came in the query string is forwarded in the
-- Authorization header.
--
local core = require("apisix.core")
local ffi = require("ffi")
local ngx = ngx
local ngx_time = ngx.time
local str_byte = string.byte
local str_find = string.find
local str_sub = string.sub
local bit = require("bit")

local plugin_name = "nimbus-auth"

local schema = {
    type = "object",
    properties = {
        secret = { type = "string", minLength = 32 },
        header = { type = "string", default = "authorization" },
        query = { type = "string", default = "jwt" },
        hide_credentials = { type = "boolean", default = false },
        lifetime_grace_period = { type = "integer", minimum = 0, default = 0 },
        issuer = { type = "string", default = "nimbus" },
        user_header = { type = "string", default = "X-Nimbus-User" },
        realm = { type = "string", default = "nimbus" },
        anonymous = { type = "boolean", default = false },
    },
    required = { "secret" },
    encrypt_fields = { "secret" },
}

local _M = {
    version = 0.1,
    -- Custom plugins take 1-99; authentication must run before anything
    -- that uses the identity, so the top of that range.
    priority = 99,
    name = plugin_name,
    schema = schema,
}

function _M.check_schema(conf)
    return core.schema.check(schema, conf)
end

ffi.cdef([[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
]])

-- nginx links OpenSSL, so its symbols are usually global already.
local crypto = ffi.C
if not pcall(function() return crypto.EVP_sha256 end) then
    crypto = ffi.load("libcrypto.so.3")
end

local digest_buf = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

local function hmac_sha256(key, data)
    local ok = crypto.HMAC(crypto.EVP_sha256(), key, #key, data, #data, digest_buf, digest_len)
    if ok == nil then
        return nil
    end
    return ffi.string(digest_buf, digest_len[0])
end

local function base64url_decode(input)
    local padded = input:gsub("-", "+"):gsub("_", "/")
    local rem = #padded % 4
    if rem == 2 then
        padded = padded .. "=="
    elseif rem == 3 then
        padded = padded .. "="
    elseif rem == 1 then
        return nil
    end
    return ngx.decode_base64(padded)
end

-- Compare without stopping at the first difference.
local function constant_time_equal(a, b)
    if #a ~= #b then
        return false
    end
    local diff = 0
    for i = 1, #a do
        diff = bit.bor(diff, bit.bxor(str_byte(a, i), str_byte(b, i)))
    end
    return diff == 0
end

-- The claims of a valid token, or nil and the reason.
local function verify(conf, token)
    local first = str_find(token, ".", 1, true)
    local second = first and str_find(token, ".", first + 1, true)
    if not second or str_find(token, ".", second + 1, true) then
        return nil, "token is malformed"
    end
    local header_part = str_sub(token, 1, first - 1)
    local payload_part = str_sub(token, first + 1, second - 1)
    local signature_part = str_sub(token, second + 1)

    local header = core.json.decode(base64url_decode(header_part) or "")
    if type(header) ~= "table" then
        return nil, "token is malformed"
    end
    if header.alg ~= "HS256" then
        return nil, "token must be signed with HS256"
    end
    local signature = base64url_decode(signature_part)
    local expected = hmac_sha256(conf.secret, header_part .. "." .. payload_part)
    if not signature or not expected or not constant_time_equal(signature, expected) then
        return nil, "token signature is invalid"
    end

    local claims = core.json.decode(base64url_decode(payload_part) or "")
    if type(claims) ~= "table" then
        return nil, "token is malformed"
    end
    local now = ngx_time()
    local grace = conf.lifetime_grace_period
    if type(claims.exp) ~= "number" then
        return nil, "token has no expiry"
    end
    if now > claims.exp + grace then
        return nil, "token has expired"
    end
    if type(claims.nbf) == "number" and now + grace < claims.nbf then
        return nil, "token is not valid yet"
    end
    if conf.issuer ~= "" and claims.iss ~= conf.issuer then
        return nil, "token has the wrong issuer"
    end
    if type(claims.sub) ~= "string" or claims.sub == "" then
        return nil, "token has no subject"
    end
    return claims
end

-- The token and where it came from ("header" or "query").
local function fetch_token(conf, ctx)
    local value = core.request.header(ctx, conf.header)
    if value then
        local token = value:match("^[Bb]earer%s+(%S+)%s*$")
        return token, "header"
    end
    local args = core.request.get_uri_args(ctx) or {}
    local token = args[conf.query]
    if type(token) == "string" and token ~= "" then
        return token, "query"
    end
    return nil
end

local function deny(conf, reason)
    core.response.set_header("WWW-Authenticate",
        'Bearer realm="' .. conf.realm .. '", error="invalid_token"')
    return 401, { error = { kind = "unauthorized", message = reason } }
end

function _M.rewrite(conf, ctx)
    -- Whatever the client claims about its identity is dropped first.
    core.request.set_header(ctx, conf.user_header, nil)

    local token, source = fetch_token(conf, ctx)
    if not token then
        if conf.anonymous then
            return
        end
        return deny(conf, "missing token: send Authorization: Bearer <token>")
    end
    local claims, reason = verify(conf, token)
    if not claims then
        if conf.anonymous then
            return
        end
        return deny(conf, reason)
    end

    core.request.set_header(ctx, conf.user_header, claims.sub)
    if source == "query" then
        -- The upstream verifies the token too: give it in the header.
        core.request.set_header(ctx, "Authorization", "Bearer " .. token)
        local args = core.request.get_uri_args(ctx)
        args[conf.query] = nil
        core.request.set_uri_args(ctx, args)
    end
    if conf.hide_credentials and source == "header" then
        core.request.set_header(ctx, conf.header, nil)
    end
end

return _M
