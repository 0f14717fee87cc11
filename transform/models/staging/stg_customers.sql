-- One row per customer of a shop.
select
    {{ record_key('c."companyId"', 'c."connectionId"', 'c.id') }} as customer_key,
    c."companyId" as company_id,
    c."connectionId" as connection_id,
    c.id as customer_id,
    c."customerName" as customer_name,
    c."emailAddress" as email_address,
    {{ currency('c."defaultCurrency"') }} as default_currency,
    c."createdDate" as created_at,
    c."modifiedDate" as modified_at
from {{ source('codat', 'customers') }} as c
