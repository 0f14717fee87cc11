-- One row per service charge of an order (serviceCharges: shipping and the like).
select
    {{ order_key_columns('o') }},
    charge.position as charge_number,
    {{ json_text('charge.value', 'description') }} as description,
    {{ json_text('charge.value', 'type') }} as charge_type,
    {{ amount(json_text('charge.value', 'quantity')) }} as quantity,
    {{ amount(json_text('charge.value', 'taxAmount')) }} as tax_amount,
    {{ amount(json_text('charge.value', 'totalAmount')) }} as total_amount
from {{ source('codat', 'orders') }} as o
{{ json_elements(json_array('o."serviceCharges"'), 'charge') }}
