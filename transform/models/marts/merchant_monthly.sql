-- One row per company, commerce connection, calendar month (UTC) and currency: how the merchant
-- sold. Orders count in the month they were created, disputes in the month they were opened.
-- Amounts are never converted: each row holds one currency (XXX: unknown). Column definitions:
-- transform/models/marts/marts.yml and the README.
with order_months as (
    select
        company_id,
        connection_id,
        month,
        currency,
        count(*) as orders,
        sum(gross_sales) as gross_sales,
        sum(discount_amount) as discounts,
        sum(refund_amount) as refunds,
        sum(net_sales) as net_sales,
        count(distinct customer_id) as customers
    from {{ ref('int_order_amounts') }}
    -- the orders that have a month; duckdb 1.2.2 can keep rows of `date_trunc(...) is not null` whose
    -- timestamp is null (seen on a plain table), so the filter is on the timestamp itself
    where created_at is not null
    group by company_id, connection_id, month, currency
),

dispute_months as (
    select
        company_id,
        connection_id,
        {{ utc_month('created_at') }} as month,
        currency,
        count(*) as disputes_opened,
        sum(coalesce(disputed_amount, 0)) as disputed_amount
    from {{ ref('stg_disputes') }}
    where created_at is not null
    group by company_id, connection_id, {{ utc_month('created_at') }}, currency
),

merchant_months as (
    select company_id, connection_id, month, currency from order_months
    union
    select company_id, connection_id, month, currency from dispute_months
)

select
    m.company_id,
    m.connection_id,
    merchant.company_name,
    merchant.platform,
    m.month,
    m.currency,
    cast(coalesce(o.orders, 0) as bigint) as orders,
    coalesce(o.gross_sales, 0) as gross_sales,
    coalesce(o.discounts, 0) as discounts,
    coalesce(o.refunds, 0) as refunds,
    coalesce(o.net_sales, 0) as net_sales,
    cast(coalesce(o.customers, 0) as bigint) as customers,
    case when o.orders > 0 then {{ rounded_ratio('o.net_sales', 'o.orders', 2) }} end
        as average_order_value,
    cast(coalesce(d.disputes_opened, 0) as bigint) as disputes_opened,
    coalesce(d.disputed_amount, 0) as disputed_amount
from merchant_months as m
left join order_months as o
    on o.company_id = m.company_id and o.connection_id = m.connection_id
    and o.month = m.month and o.currency = m.currency
left join dispute_months as d
    on d.company_id = m.company_id and d.connection_id = m.connection_id
    and d.month = m.month and d.currency = m.currency
left join {{ ref('stg_merchants') }} as merchant
    on merchant.company_id = m.company_id and merchant.connection_id = m.connection_id
