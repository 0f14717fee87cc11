-- One row per payment embedded in an order (payments). A payment without a currency of its own is
-- in its order's currency.
select
    {{ order_key_columns('o') }},
    payment.position as payment_number,
    {{ json_text('payment.value', 'id') }} as payment_id,
    {{ amount(json_text('payment.value', 'amount')) }} as amount,
    {{ currency("coalesce(" ~ clean_text(json_text('payment.value', 'currency')) ~ ", o.currency)") }}
        as currency,
    {{ clean_text(json_text('payment.value', 'type')) }} as payment_type,
    {{ clean_text(json_text('payment.value', 'status')) }} as status,
    {{ json_text('payment.value', 'paymentProvider') }} as payment_provider
from {{ source('codat', 'orders') }} as o
{{ json_elements(json_array('o."payments"'), 'payment') }}
