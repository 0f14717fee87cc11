-- One row per company, commerce connection, calendar month (UTC), currency and payment type: how
-- the merchant's customers paid for the orders created that month. Failed and cancelled payments
-- are left out; a payment without a type is Unknown. share_of_amount is the type's part of the
-- month's paid amount in that currency (0 to 1, 4 decimals).
with payments as (
    select
        p.company_id,
        p.connection_id,
        {{ utc_month('o.created_at') }} as month,
        p.currency,
        coalesce(p.payment_type, 'Unknown') as payment_type,
        p.order_key,
        coalesce(p.amount, 0) as amount
    from {{ ref('stg_order_payments') }} as p
    inner join {{ ref('stg_orders') }} as o on o.order_key = p.order_key
    where o.created_at is not null
      and (p.status is null or p.status not in ('Failed', 'Cancelled'))
),

by_type as (
    select
        company_id, connection_id, month, currency, payment_type,
        count(*) as payments,
        count(distinct order_key) as orders,
        sum(amount) as amount
    from payments
    group by company_id, connection_id, month, currency, payment_type
)

select
    company_id,
    connection_id,
    month,
    currency,
    payment_type,
    cast(payments as bigint) as payments,
    cast(orders as bigint) as orders,
    amount,
    case
        when sum(amount) over (partition by company_id, connection_id, month, currency) <> 0
            then {{ rounded_ratio('amount', 'sum(amount) over (partition by company_id, connection_id, month, currency)', 4) }}
    end as share_of_amount
from by_type
