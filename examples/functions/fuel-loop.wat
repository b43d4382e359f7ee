;; Burns fuel in proportion to its input: sums 0..n the slow way, so you can
;; watch `fuel_consumed` grow with n (and hit the fuel limit for large n).
;;
;; Deploy and invoke:
;;   nimbus deploy fuel-loop.wat --name fuel-loop --fuel 100000000
;;   nimbus invoke -v <id> 1000        # 499500, with its fuel and duration
;;   nimbus invoke -v <id> 100000000   # out_of_fuel
(module
  (func (export "handle") (param $n i32) (result i64)
    (local $i i32) (local $acc i64)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    local.get $acc))
