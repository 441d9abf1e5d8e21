;; Floor probes for the filter's per-record cost (issue 24), run by
;; scripts/bench-fluent-bit.sh (filter runs o, p and q). Hand-written WebAssembly, so
;; nothing a compiler adds is counted: raw unaligned loads with no bound checks (every
;; allocation carries 8 bytes of slack), no validation, no decision. `strings` and
;; `members` keep 11 records
;; of every 64 (the input pointer returned, as lockstep returns a kept record) and drop
;; the rest (0, read by the host as ""): on the bench's workload that is exactly the
;; 30,800 of 179,200 that lockstep and the Lua mirror keep, so the host's re-packing of
;; kept records costs the probes what it costs them.
;;
;; `strings`: finds every string boundary of the record eight bytes at a time, the
;;   least any reader that must tell keys from values does.
;; `drop`: nothing (returns 0): with run i's module, which exports no malloc/free, it
;;   measures what the host's four calls into the module's allocator cost a record.
;; `members`: walks the top-level object member by member as lockstep's scanner does:
;;   the key's first word and its closing quote, one hashed probe of a 256-slot key
;;   table, the `:`, the value skipped (strings and digit runs eight bytes at a time,
;;   containers byte by byte), the `,`. It reads no value and validates nothing.
(module
  (memory (export "memory") 2)
  (global $top (mut i32) (i32.const 4096))
  (global $live (mut i32) (i32.const 0))
  (global $sink (mut i64) (i64.const 0))
  (global $calls (mut i32) (i32.const 0))

  ;; The record at $p if this call is one of the 11 of every 64 kept, else 0.
  (func $verdict (param $p i32) (result i32)
    global.get $calls
    i32.const 1
    i32.add
    global.set $calls
    local.get $p
    i32.const 0
    global.get $calls
    i32.const 63
    i32.and
    i32.const 11
    i32.lt_u
    select)

  ;; The host copies tag and record with these: a bump arena that resets when nothing
  ;; is outstanding, as lockstep's does.
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32) (local $need i32)
    global.get $top
    local.set $p
    local.get $p
    local.get $n
    i32.add
    i32.const 15
    i32.add
    i32.const -8
    i32.and
    local.tee $need
    global.set $top
    block $ok
      local.get $need
      memory.size
      i32.const 16
      i32.shl
      i32.le_u
      br_if $ok
      local.get $need
      i32.const 16
      i32.shr_u
      i32.const 1
      i32.add
      memory.size
      i32.sub
      memory.grow
      i32.const -1
      i32.ne
      br_if $ok
      i32.const 0
      return
    end
    global.get $live
    i32.const 1
    i32.add
    global.set $live
    local.get $p)

  (func (export "free") (param $p i32)
    local.get $p
    i32.eqz
    if
      return
    end
    global.get $live
    i32.const 1
    i32.sub
    global.set $live
    global.get $live
    i32.eqz
    if
      i32.const 4096
      global.set $top
    end)

  ;; Marks (high bit of each byte) the quotes and backslashes of w; the lowest mark is
  ;; exact for ASCII, and a non-ASCII byte marks falsely (the callers step over it).
  (func $qmask (param $w i64) (result i64)
    local.get $w
    i64.const 0x2222222222222222
    i64.xor
    i64.const 0x0101010101010101
    i64.sub
    local.get $w
    i64.const 0x5c5c5c5c5c5c5c5c
    i64.xor
    i64.const 0x0101010101010101
    i64.sub
    i64.or
    i64.const 0x8080808080808080
    i64.and)

  ;; The index of the closing quote of the string whose body starts at $i.
  (func $str_end (param $i i32) (param $end i32) (result i32)
    (local $m i64) (local $c i32)
    block $out
      loop $L
        local.get $i
        local.get $end
        i32.ge_u
        br_if $out
        local.get $i
        i64.load align=1
        ;; inlined $qmask: an interpreter pays for every call
        local.tee $m
        i64.const 0x2222222222222222
        i64.xor
        i64.const 0x0101010101010101
        i64.sub
        local.get $m
        i64.const 0x5c5c5c5c5c5c5c5c
        i64.xor
        i64.const 0x0101010101010101
        i64.sub
        i64.or
        i64.const 0x8080808080808080
        i64.and
        local.tee $m
        i64.eqz
        if
          local.get $i
          i32.const 8
          i32.add
          local.set $i
          br $L
        end
        local.get $i
        local.get $m
        i64.ctz
        i32.wrap_i64
        i32.const 3
        i32.shr_u
        i32.add
        local.tee $i
        i32.load8_u
        local.tee $c
        i32.const 34
        i32.eq
        br_if $out
        local.get $i
        i32.const 2
        i32.const 1
        local.get $c
        i32.const 92
        i32.eq
        select
        i32.add
        local.set $i
        br $L
      end
    end
    local.get $i)

  ;; The end of the run of digits at $i.
  (func $digits (param $i i32) (result i32)
    (local $t i64)
    loop $L
      local.get $i
      i64.load align=1
      i64.const 0x3030303030303030
      i64.xor
      local.tee $t
      i64.const 0x7676767676767676
      i64.add
      local.get $t
      i64.or
      i64.const 0x8080808080808080
      i64.and
      local.tee $t
      i64.eqz
      if
        local.get $i
        i32.const 8
        i32.add
        local.set $i
        br $L
      end
    end
    local.get $i
    local.get $t
    i64.ctz
    i32.wrap_i64
    i32.const 3
    i32.shr_u
    i32.add)

  (func (export "drop") (param i32 i32 i32 i32 i32 i32) (result i32)
    i32.const 0)

  (func (export "strings") (param i32 i32 i32 i32) (param $p i32) (param $len i32) (result i32)
    (local $end i32) (local $m i64) (local $c i32) (local $n i32) (local $rec i32)
    local.get $p
    local.set $rec
    local.get $p
    local.get $len
    i32.add
    local.set $end
    block $done
      loop $L
        local.get $p
        local.get $end
        i32.ge_u
        br_if $done
        local.get $p
        i64.load align=1
        call $qmask
        local.tee $m
        i64.eqz
        if
          local.get $p
          i32.const 8
          i32.add
          local.set $p
          br $L
        end
        local.get $p
        local.get $m
        i64.ctz
        i32.wrap_i64
        i32.const 3
        i32.shr_u
        i32.add
        local.tee $p
        i32.load8_u
        local.tee $c
        i32.const 34
        i32.eq
        local.get $n
        i32.add
        local.set $n
        local.get $p
        i32.const 2
        i32.const 1
        local.get $c
        i32.const 92
        i32.eq
        select
        i32.add
        local.set $p
        br $L
      end
    end
    global.get $sink
    local.get $n
    i64.extend_i32_u
    i64.add
    global.set $sink
    local.get $rec
    call $verdict)

  (func (export "members") (param i32 i32 i32 i32) (param $p i32) (param $len i32) (result i32)
    (local $i i32) (local $end i32) (local $w i64) (local $m i64) (local $k i32)
    (local $c i32) (local $d i32) (local $acc i64)
    local.get $p
    local.get $len
    i32.add
    local.set $end
    local.get $p
    i32.load8_u
    i32.const 123
    i32.ne
    if
      i32.const 0
      return
    end
    local.get $p
    i32.const 1
    i32.add
    local.set $i
    block $done
      loop $member
        ;; the key
        local.get $i
        i32.load8_u
        i32.const 34
        i32.ne
        br_if $done
        local.get $i
        i32.const 1
        i32.add
        i64.load align=1
        local.tee $w
        call $qmask
        local.tee $m
        i64.eqz
        if
          ;; a key of eight bytes or more
          local.get $i
          i32.const 9
          i32.add
          local.get $end
          call $str_end
          local.set $i
          i32.const 8
          local.set $k
        else
          local.get $m
          i64.ctz
          i32.wrap_i64
          i32.const 3
          i32.shr_u
          local.tee $k
          local.get $i
          i32.const 1
          i32.add
          i32.add
          local.tee $i
          i32.load8_u
          i32.const 34
          i32.ne
          if
            local.get $i
            local.get $end
            call $str_end
            local.set $i
          end
        end
        ;; one probe of the key table (256 slots of 8 bytes at 1024): the key's word,
        ;; cut to its length, with the length on top, times a constant, top byte.
        local.get $w
        i64.const -1
        local.get $k
        i32.const 3
        i32.shl
        i64.extend_i32_u
        i64.shl
        i64.const -1
        i64.xor
        i64.and
        local.get $k
        i64.extend_i32_u
        i64.const 57
        i64.shl
        i64.or
        local.tee $w
        i64.const 0x9E3779B97F4A7C15
        i64.mul
        i64.const 53
        i64.shr_u
        i32.wrap_i64
        i32.const 2040
        i32.and
        i64.load offset=1024
        local.get $w
        i64.eq
        if
          local.get $acc
          i64.const 1
          i64.add
          local.set $acc
        end
        ;; the colon
        local.get $i
        i32.load8_u offset=1
        i32.const 58
        i32.ne
        br_if $done
        local.get $i
        i32.const 2
        i32.add
        local.tee $i
        i32.load8_u
        local.tee $c
        i32.const 34
        i32.eq
        if
          local.get $i
          i32.const 1
          i32.add
          local.get $end
          call $str_end
          i32.const 1
          i32.add
          local.set $i
        else
          local.get $c
          i32.const 123
          i32.eq
          local.get $c
          i32.const 91
          i32.eq
          i32.or
          if
            ;; a container, byte by byte with its strings skipped
            i32.const 0
            local.set $d
            block $nested
            loop $nest
              local.get $i
              local.get $end
              i32.ge_u
              br_if $done
              local.get $i
              i32.load8_u
              local.set $c
              local.get $i
              i32.const 1
              i32.add
              local.set $i
              local.get $c
              i32.const 34
              i32.eq
              if
                local.get $i
                local.get $end
                call $str_end
                i32.const 1
                i32.add
                local.set $i
                br $nest
              end
              local.get $c
              i32.const 123
              i32.eq
              local.get $c
              i32.const 91
              i32.eq
              i32.or
              if
                local.get $d
                i32.const 1
                i32.add
                local.set $d
                br $nest
              end
              local.get $c
              i32.const 125
              i32.eq
              local.get $c
              i32.const 93
              i32.eq
              i32.or
              if
                local.get $d
                i32.const 1
                i32.sub
                local.tee $d
                i32.eqz
                br_if $nested
              end
              br $nest
            end
            end
          else
            local.get $c
            i32.const 45
            i32.eq
            local.get $i
            i32.add
            call $digits
            local.tee $i
            i32.load8_u
            i32.const 46
            i32.eq
            if
              local.get $i
              i32.const 1
              i32.add
              call $digits
              local.set $i
            end
            ;; true / false / null: letters are not digits; skip the word
            local.get $c
            i32.const 96
            i32.gt_u
            if
              local.get $i
              i32.const 5
              i32.const 4
              local.get $c
              i32.const 102
              i32.eq
              select
              i32.add
              local.set $i
            end
          end
        end
        ;; the comma, or the end
        local.get $i
        i32.load8_u
        i32.const 44
        i32.ne
        br_if $done
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $member
      end
    end
    global.get $sink
    local.get $acc
    i64.add
    global.set $sink
    local.get $p
    call $verdict)
)
