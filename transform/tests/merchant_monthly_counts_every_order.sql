-- Every order in a month is in exactly one merchant-month, and the mart's net sales add up to the
-- orders' totalAmount (a checksum across currencies, not a figure).
with mart as (
    select sum(orders) as orders, sum(net_sales) as net_sales
    from {{ ref('merchant_monthly') }}
),

orders as (
    select count(*) as orders, coalesce(sum(coalesce(total_amount, 0)), 0) as net_sales
    from {{ ref('stg_orders') }}
    where created_at is not null
)

select mart.orders as mart_orders, orders.orders as source_orders, mart.net_sales as mart_net_sales,
       orders.net_sales as source_net_sales
from mart cross join orders
where coalesce(mart.orders, 0) <> orders.orders or coalesce(mart.net_sales, 0) <> orders.net_sales
