-- One row per line of an order (orderLineItems); a refund is a line with a negative quantity.
select
    {{ order_key_columns('o') }},
    line.position as line_number,
    {{ json_text('line.value', 'id') }} as line_id,
    {{ json_text("line.value -> 'productRef'", 'id') }} as product_id,
    {{ json_text("line.value -> 'productVariantRef'", 'id') }} as product_variant_id,
    {{ amount(json_text('line.value', 'quantity')) }} as quantity,
    {{ amount(json_text('line.value', 'unitPrice')) }} as unit_price,
    {{ amount(json_text('line.value', 'taxPercentage')) }} as tax_percentage,
    {{ amount(json_text('line.value', 'totalTaxAmount')) }} as total_tax_amount,
    {{ amount(json_text('line.value', 'totalAmount')) }} as total_amount,
    {{ amount(json_text('line.value', 'quantity')) }} < 0 as is_refund
from {{ source('codat', 'orders') }} as o
{{ json_elements(json_array('o."orderLineItems"'), 'line') }}
