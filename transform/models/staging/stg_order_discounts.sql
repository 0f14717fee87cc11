-- One row per discount allocated to an order line (discountAllocations), as a positive amount
-- (0 when Codat sent none).
select
    {{ order_key_columns('o') }},
    line.position as line_number,
    discount.position as discount_number,
    {{ json_text('discount.value', 'name') }} as discount_name,
    coalesce(abs({{ amount(json_text('discount.value', 'totalAmount')) }}), 0) as discount_amount
from {{ source('codat', 'orders') }} as o
{{ json_elements(json_array('o."orderLineItems"'), 'line') }}
{{ json_elements("line.value -> 'discountAllocations'", 'discount') }}
