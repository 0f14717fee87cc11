-- One row per order with what it contributes to sales, all positive, in the order's currency:
--   net_sales       Codat's totalAmount: after discounts and refunds, tax and service charges
--                   included, gratuity excluded
--   discount_amount the order's discount allocations, or |totalDiscount| when it has none
--   refund_amount   see stg_refunds
--   gross_sales     net_sales + discount_amount + refund_amount
with discounts as (
    select order_key, sum(discount_amount) as allocated, count(*) as allocations
    from {{ ref('stg_order_discounts') }}
    group by order_key
),

amounts as (
    select
        o.order_key,
        o.company_id,
        o.connection_id,
        o.order_id,
        o.created_at,
        {{ utc_month('o.created_at') }} as month,
        o.currency,
        o.customer_id,
        coalesce(o.total_amount, 0) as net_sales,
        case when d.allocations > 0 then d.allocated else coalesce(abs(o.total_discount), 0) end
            as discount_amount,
        coalesce(r.refund_amount, 0) as refund_amount
    from {{ ref('stg_orders') }} as o
    left join discounts as d on d.order_key = o.order_key
    left join {{ ref('stg_refunds') }} as r on r.order_key = o.order_key
)

select *, net_sales + discount_amount + refund_amount as gross_sales
from amounts
