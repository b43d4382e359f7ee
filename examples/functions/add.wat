;; The seed's function: adds one to a number (scalar `handle` ABI).
;;
;; Deploy and invoke (no build step; WAT is compiled on upload):
;;   nimbus deploy add.wat --name add
;;   nimbus invoke <id> 10            # 11
(module
  (func (export "handle") (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add))
