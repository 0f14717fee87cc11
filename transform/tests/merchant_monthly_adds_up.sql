-- Every merchant-month adds up, and no amount is negative.
select *
from {{ ref('merchant_monthly') }}
where gross_sales <> net_sales + discounts + refunds
   or discounts < 0 or refunds < 0 or disputed_amount < 0
   or orders < 0 or customers > orders
