-- One row per refunded order, the refund as a positive amount in the order's currency.
-- Sign rule: Codat's schema says totalRefund <= 0, its guides and some platforms send it
-- positive, so the sign is dropped. When an order has no totalRefund, its lines with a negative
-- quantity are the refund. Codat gives a refund no date of its own: it belongs to its order.
with refund_lines as (
    select order_key, -sum(total_amount) as refund_lines_amount, count(*) as refund_lines
    from {{ ref('stg_order_lines') }}
    where is_refund
    group by order_key
)

select
    o.order_key,
    o.company_id,
    o.connection_id,
    o.order_id,
    o.currency,
    o.total_refund as total_refund_as_sent,
    coalesce(r.refund_lines, 0) as refund_lines,
    case
        when coalesce(o.total_refund, 0) <> 0 then abs(o.total_refund)
        else abs(r.refund_lines_amount)
    end as refund_amount
from {{ ref('stg_orders') }} as o
left join refund_lines as r on r.order_key = o.order_key
where coalesce(o.total_refund, 0) <> 0 or coalesce(r.refund_lines_amount, 0) <> 0
