-- One row per product (its variants stay nested in the source table).
select
    {{ record_key('p."companyId"', 'p."connectionId"', 'p.id') }} as product_key,
    p."companyId" as company_id,
    p."connectionId" as connection_id,
    p.id as product_id,
    p.name as product_name,
    p.categorization,
    p."isGiftCard" as is_gift_card,
    p.status,
    p."createdDate" as created_at,
    p."modifiedDate" as modified_at
from {{ source('codat', 'products') }} as p
