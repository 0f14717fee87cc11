-- One row per order. Amounts in the order's own currency, as Codat sent them.
select
    {{ order_key_columns('o') }},
    o."orderNumber" as order_number,
    {{ currency('o.currency') }} as currency,
    {{ real_date('o."createdDate"') }} as created_at,
    {{ real_date('o."closedDate"') }} as closed_at,
    o."modifiedDate" as modified_at,
    {{ amount('o."totalAmount"') }} as total_amount,
    {{ amount('o."totalRefund"') }} as total_refund,
    {{ amount('o."totalDiscount"') }} as total_discount,
    {{ amount('o."totalTaxAmount"') }} as total_tax_amount,
    {{ amount('o."totalGratuity"') }} as total_gratuity,
    nullif({{ json_text('o."customerRef"', 'id') }}, '') as customer_id,
    {{ json_text('o."locationRef"', 'id') }} as location_id,
    o.country
from {{ source('codat', 'orders') }} as o
